//! `ClientActor`: one per client. It serialises every command for its client, decides it with
//! the domain's pure functions, appends the events and replies once they are durable and the
//! local projections applied them.
//!
//! It pipelines: the next command is decided against state that already includes events still
//! being flushed. Should an append fail, appends queued behind it on the same stream fail on
//! their stale expected version, so no command is acknowledged without being durable; the actor
//! refuses new commands until every pending append has answered, then restores itself from the
//! store (which then holds whatever did commit, on either of its streams).

use crate::store::{EventStore, NewEvent, StoreError};
use actix::prelude::*;
use domain::client::{self, ClientCommand, ClientError, ClientState};
use domain::event::{client_stream, token_stream, Event};
use domain::grant::{CodeView, ConsentView, RefreshView};
use domain::token::{self, TokenCommand, TokenError};
use domain::values::{ClientId, UserId};
use domain::{Metadata, RecordedEvent};
use projections::ProjectionError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A snapshot is written once the configuration moved this many versions past the last one.
const SNAPSHOT_EVERY: u64 = 16;

/// Why a command sent to an actor failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The client aggregate refused it.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The token decision refused it.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The user aggregate refused it.
    #[error(transparent)]
    User(#[from] domain::user::UserError),
    /// The session aggregate refused it.
    #[error(transparent)]
    Session(#[from] domain::session::SessionError),
    /// An initial access token refused it.
    #[error(transparent)]
    Registration(#[from] domain::registration::RegistrationTokenError),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The actor could not be reached.
    #[error("the client's actor is unavailable: {0}")]
    Unavailable(String),
    /// An append of the actor failed (a stale version, say): it refuses commands until what it
    /// had in flight has answered and its state is reloaded. Worth sending again shortly.
    #[error("the client's actor is reloading after a failed append; retry")]
    Recovering,
    /// A key command was refused or failed.
    #[error("{0}")]
    Keys(String),
    /// A read model the decision needs could not be read.
    #[error("reading the read models")]
    ReadModels(#[source] ProjectionError),
}

/// The events a command recorded, durable and applied to the local projections.
pub type CommandResult = Result<Vec<Arc<RecordedEvent>>, CommandError>;

/// A command on the client's configuration.
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ExecuteClientCommand {
    /// The command.
    pub command: ClientCommand,
    /// Request context for the events.
    pub metadata: Metadata,
}

/// A command on the client's tokens.
#[derive(Debug, Clone, Message)]
#[rtype(result = "CommandResult")]
pub struct ExecuteTokenCommand {
    /// The command.
    pub command: TokenCommand,
    /// Request context for the events.
    pub metadata: Metadata,
}

/// What the decisions on a user's behalf read of earlier events: the local read models, as of
/// the events already applied. The actor brings what they answer up to date with its events
/// still in flight; since it reads them from inside its own serialised handling, nothing can
/// slip between the read and the decision.
pub trait GrantViews: Send + Sync {
    /// An authorization code by hash.
    fn code(&self, code_hash: &str) -> Result<Option<CodeView>, ProjectionError>;
    /// A refresh token by hash.
    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshView>, ProjectionError>;
    /// A user's remembered consent for a client.
    fn consent(&self, user: &UserId, client: &ClientId) -> Result<ConsentView, ProjectionError>;
    /// A device authorization by the hash of its device code.
    fn device(
        &self,
        _device_code_hash: &str,
    ) -> Result<Option<domain::device::DeviceView>, ProjectionError> {
        Ok(None)
    }
    /// A pushed authorization request by the hash of its `request_uri`.
    fn pushed(
        &self,
        _request_uri_hash: &str,
    ) -> Result<Option<domain::par::PushedView>, ProjectionError> {
        Ok(None)
    }
    /// Whether an assertion's `jti` was accepted for a client and is still remembered.
    fn assertion_seen(
        &self,
        client: &ClientId,
        issuer: &str,
        jti: &str,
        now: i64,
    ) -> Result<bool, ProjectionError>;
    /// The client's configuration as the directory holds it, and the version of its
    /// configuration stream it reflects: an actor restores from it without reading the log.
    fn client(&self, _client: &ClientId) -> Option<(domain::client::Client, u64)> {
        None
    }
}

/// Whether the browser session an OpenID Connect grant began in has ended.
fn session_ended(
    models: &projections::ReadModels,
    signed_in: Option<&domain::event::OidcContext>,
) -> Result<bool, ProjectionError> {
    match signed_in.and_then(|c| c.sid.as_deref()) {
        Some(sid) => models.users.session_ended(sid),
        None => Ok(false),
    }
}

/// What a grant's view needs of its user: whether the session it began in ended, and whether an
/// administrator locked the account.
fn user_state(
    models: &projections::ReadModels,
    signed_in: Option<&domain::event::OidcContext>,
    user: &UserId,
) -> Result<(bool, bool), ProjectionError> {
    Ok((session_ended(models, signed_in)?, user_locked(models, user)))
}

/// Whether an administrator locked the user's account.
fn user_locked(models: &projections::ReadModels, user: &UserId) -> bool {
    models.users.get(user).is_some_and(|u| u.disabled)
}

impl GrantViews for projections::ReadModels {
    fn code(&self, code_hash: &str) -> Result<Option<CodeView>, ProjectionError> {
        let mut view = self.tokens.code(code_hash)?;
        if let Some(v) = &mut view {
            (v.session_ended, v.user_locked) =
                user_state(self, v.issued.oidc.as_ref(), &v.issued.user_id)?;
        }
        Ok(view)
    }
    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshView>, ProjectionError> {
        let mut view = self.tokens.refresh(token_hash)?;
        if let Some(v) = &mut view {
            (v.session_ended, v.user_locked) =
                user_state(self, v.issued.oidc.as_ref(), &v.issued.user_id)?;
        }
        Ok(view)
    }
    fn pushed(
        &self,
        request_uri_hash: &str,
    ) -> Result<Option<domain::par::PushedView>, ProjectionError> {
        self.tokens.pushed(request_uri_hash)
    }
    fn device(
        &self,
        device_code_hash: &str,
    ) -> Result<Option<domain::device::DeviceView>, ProjectionError> {
        let mut view = self.tokens.device(device_code_hash)?;
        if let Some(v) = &mut view {
            if let Some(domain::device::DeviceDecision::Approved(a)) = &v.decision {
                v.user_locked = user_locked(self, &a.user_id);
            }
        }
        Ok(view)
    }
    fn consent(&self, user: &UserId, client: &ClientId) -> Result<ConsentView, ProjectionError> {
        let row = self.consents.get(user, client.as_str())?;
        Ok(ConsentView {
            scopes: row.map(|c| c.scopes),
        })
    }
    fn assertion_seen(
        &self,
        client: &ClientId,
        issuer: &str,
        jti: &str,
        now: i64,
    ) -> Result<bool, ProjectionError> {
        self.tokens
            .assertion_seen(client.as_str(), issuer, jti, now)
    }
    fn client(&self, client: &ClientId) -> Option<(domain::client::Client, u64)> {
        self.clients
            .get(client.as_str())
            .map(|v| (v.client.clone(), v.version))
    }
}

/// Called once when an actor stops.
type OnStop = Box<dyn FnOnce(&ClientId, &Addr<ClientActor>) + Send>;

/// The actor of one client.
pub struct ClientActor {
    client_id: ClientId,
    store: Arc<dyn EventStore>,
    config_stream: String,
    tokens_stream: String,
    state: ClientState,
    config_version: u64,
    snapshot_version: u64,
    tokens_version: u64,
    in_flight: usize,
    /// The read models the grant decisions consult.
    views: Arc<dyn GrantViews>,
    /// Events appended but not yet answered (so not yet in the read models), by append.
    in_flight_events: Vec<(u64, Arc<Vec<Event>>)>,
    next_append: u64,
    /// An append failed: new commands are refused until every pending append has answered and
    /// the state was reloaded from the store.
    recovering: bool,
    last_used: Instant,
    idle_timeout: Duration,
    on_stop: Option<OnStop>,
    /// How each device has been polling (RFC 8628 §3.5), by device code hash: not recorded,
    /// so a restart or an idle stop forgets it.
    device_pace: std::collections::HashMap<domain::values::SecretHash, domain::device::Pace>,
}

/// Most device polling paces one client's actor keeps.
const MAX_DEVICE_PACES: usize = 10_000;

impl ClientActor {
    /// Restores the actor of `client_id`: the latest snapshot plus the configuration events
    /// after it, and the version of the token stream (whose events it never folds).
    pub fn restore(
        client_id: ClientId,
        store: Arc<dyn EventStore>,
        views: Arc<dyn GrantViews>,
        idle_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut actor = Self {
            config_stream: client_stream(&client_id),
            tokens_stream: token_stream(&client_id),
            client_id,
            store,
            state: ClientState::default(),
            config_version: 0,
            snapshot_version: 0,
            tokens_version: 0,
            in_flight: 0,
            views,
            in_flight_events: Vec::new(),
            next_append: 0,
            recovering: false,
            last_used: Instant::now(),
            idle_timeout,
            on_stop: None,
            device_pace: std::collections::HashMap::new(),
        };
        actor.reload()?;
        Ok(actor)
    }

    /// Runs `f` when the actor stops (the registry forgets it).
    pub fn on_stop(
        mut self,
        f: impl FnOnce(&ClientId, &Addr<ClientActor>) + Send + 'static,
    ) -> Self {
        self.on_stop = Some(Box::new(f));
        self
    }

    fn reload(&mut self) -> Result<(), StoreError> {
        let stream_version = self.store.stream_version(&self.config_stream)?;
        self.tokens_version = self.store.stream_version(&self.tokens_stream)?;
        // The directory row is applied before any append is answered, so when it reflects the
        // stream's version it is the whole state: no snapshot, no read of the log.
        if let Some((client, version)) = self.views.client(&self.client_id) {
            if version == stream_version {
                self.state = ClientState::Active(client);
                self.config_version = version;
                self.snapshot_version = version;
                return Ok(());
            }
        }
        let (mut state, mut version) = match self.store.load_snapshot(&self.config_stream)? {
            Some((v, bytes)) => match ciborium::from_reader::<ClientState, _>(bytes.as_slice()) {
                Ok(s) => (s, v),
                // A snapshot is only a cache: an unreadable one (an older format) is ignored.
                Err(_) => (ClientState::default(), 0),
            },
            None => (ClientState::default(), 0),
        };
        if version > stream_version {
            // A snapshot ahead of its stream is not of durable state: fold from the start.
            (state, version) = (ClientState::default(), 0);
        }
        self.snapshot_version = version;
        for e in self.store.read_stream(&self.config_stream, version + 1)? {
            client::evolve(&mut state, &e.event);
            version = e.version;
        }
        self.state = state;
        self.config_version = version;
        Ok(())
    }

    /// Reloads once nothing is pending: appends queued behind a failed one may still commit
    /// (on another stream), and the reloaded state must include them.
    fn recover_when_idle(&mut self) {
        if !self.recovering || self.in_flight != 0 {
            return;
        }
        match self.reload() {
            Ok(()) => self.recovering = false,
            Err(e) => {
                tracing::error!(client_id = %self.client_id, error = %e, "restoring a client actor failed")
            }
        }
    }

    fn refuse_while_recovering(&mut self) -> Option<ResponseActFuture<Self, CommandResult>> {
        self.recover_when_idle();
        self.recovering
            .then(|| -> ResponseActFuture<Self, CommandResult> {
                Box::pin(fut::ready(Err(CommandError::Recovering)))
            })
    }

    fn maybe_snapshot(&mut self) {
        if self.in_flight == 0 && self.config_version >= self.snapshot_version + SNAPSHOT_EVERY {
            self.snapshot();
        }
    }

    fn snapshot(&mut self) {
        // Only durable state is snapshotted: never with appends pending or after a failure.
        if self.in_flight != 0 || self.recovering || self.config_version == self.snapshot_version {
            return;
        }
        // CBOR: compact and self-describing, so the serde attributes of the domain types
        // (defaults, tagged enums) hold as they do in JSON (ADR 0012).
        let mut bytes = Vec::new();
        match ciborium::into_writer(&self.state, &mut bytes) {
            Ok(()) => {
                match self
                    .store
                    .save_snapshot(&self.config_stream, self.config_version, &bytes)
                {
                    Ok(()) => self.snapshot_version = self.config_version,
                    Err(e) => tracing::warn!(error = %e, "saving a snapshot failed"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding a snapshot failed"),
        }
    }

    /// Answers a decision that records nothing. It may rest on pending events (a revocation
    /// already on its way), so while any are pending it waits behind them with a barrier
    /// append, and fails if they do.
    fn nothing_to_append(&mut self, metadata: Metadata) -> ResponseActFuture<Self, CommandResult> {
        if self.in_flight == 0 {
            return Box::pin(fut::ready(Ok(Vec::new())));
        }
        self.append(self.tokens_stream.clone(), 0, Vec::new(), metadata)
    }

    /// Appends decided events, replying once they are durable.
    fn append(
        &mut self,
        stream: String,
        expected: u64,
        events: Vec<Event>,
        metadata: Metadata,
    ) -> ResponseActFuture<Self, CommandResult> {
        self.in_flight += 1;
        let append_id = self.next_append;
        self.next_append += 1;
        // Only what a grant view observes is kept: most appends are access tokens, which no
        // view reads, and cloning them would tax the hottest path.
        let observed: Vec<Event> = events
            .iter()
            .filter(|e| domain::grant::observed_by_views(e))
            .cloned()
            .collect();
        if !observed.is_empty() {
            self.in_flight_events.push((append_id, Arc::new(observed)));
        }
        let new = NewEvent::all(events, &metadata);
        let pending = self.store.append(&stream, expected, new);
        Box::pin(
            fut::wrap_future::<_, Self>(pending).map(move |result, act, _ctx| {
                act.in_flight -= 1;
                act.in_flight_events.retain(|(id, _)| *id != append_id);
                match result {
                    Ok(events) => {
                        act.recover_when_idle();
                        if !act.recovering {
                            act.maybe_snapshot();
                        }
                        Ok(events)
                    }
                    Err(e) => {
                        act.recovering = true;
                        act.recover_when_idle();
                        Err(CommandError::Store(e))
                    }
                }
            }),
        )
    }
}

impl Actor for ClientActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.idle_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, ctx| {
            if act.in_flight == 0 && act.last_used.elapsed() >= act.idle_timeout {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.snapshot();
        if let Some(f) = self.on_stop.take() {
            f(&self.client_id, &ctx.address());
        }
    }
}

/// Asks an actor to stop now if nothing is pending (the registry keeps the number of live
/// actors bounded); a busy one goes on and stops when idle.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for ClientActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        if self.in_flight == 0 {
            ctx.stop();
        }
    }
}

impl Handler<ExecuteClientCommand> for ClientActor {
    type Result = ResponseActFuture<Self, CommandResult>;

    fn handle(&mut self, msg: ExecuteClientCommand, _ctx: &mut Self::Context) -> Self::Result {
        self.last_used = Instant::now();
        if let Some(refused) = self.refuse_while_recovering() {
            return refused;
        }
        let events = match client::decide(&self.state, &msg.command) {
            Ok(events) => events,
            Err(e) => return Box::pin(fut::ready(Err(e.into()))),
        };
        if events.is_empty() {
            return self.nothing_to_append(msg.metadata);
        }
        for e in &events {
            client::evolve(&mut self.state, e);
        }
        let expected = self.config_version;
        self.config_version += events.len() as u64;
        self.append(self.config_stream.clone(), expected, events, msg.metadata)
    }
}

impl ClientActor {
    fn events_in_flight(&self) -> impl Iterator<Item = &Event> {
        self.in_flight_events.iter().flat_map(|(_, e)| e.iter())
    }

    /// Fills the views a grant decision needs: the read models, then the events in flight.
    /// Remembers how a device polled: `slow_down` makes its interval grow.
    fn note_poll(
        &mut self,
        poll: &domain::device::PollDevice,
        decided: &Result<Vec<Event>, domain::token::Refusal>,
    ) {
        // Only polls of a live device code of this client: made-up codes leave no trace.
        let Some(device) = poll
            .device
            .as_ref()
            .filter(|d| d.started.client_id == self.client_id && poll.now < d.started.expires_at)
        else {
            return;
        };
        let slowed = matches!(decided, Err(r) if r.error == domain::token::TokenError::SlowDown);
        let base = device.started.interval_secs;
        if self.device_pace.len() >= MAX_DEVICE_PACES {
            // Codes live minutes; an hour-old pace is done with. If that is not enough,
            // forgetting every pace only lets one early poll each through.
            self.device_pace
                .retain(|_, p| poll.now - p.last_poll_at < 3600);
            if self.device_pace.len() >= MAX_DEVICE_PACES {
                self.device_pace.clear();
            }
        }
        self.device_pace.insert(
            poll.device_code_hash.clone(),
            domain::device::next_pace(poll.pace, base, slowed, poll.now),
        );
    }

    fn fill_views(&self, command: &mut TokenCommand) -> Result<(), CommandError> {
        let unavailable = CommandError::ReadModels;
        match command {
            TokenCommand::RedeemCode(cmd) => {
                cmd.code = self
                    .views
                    .code(cmd.code_hash.as_str())
                    .map_err(unavailable)?;
                if cmd.code.is_none() {
                    // A code issued before keyed hashes: found by its bare hash, it is then
                    // known by that hash in the events this redemption records.
                    if let Some(legacy) = cmd.legacy_code_hash.take() {
                        cmd.code = self.views.code(legacy.as_str()).map_err(unavailable)?;
                        if cmd.code.is_some() {
                            cmd.code_hash = legacy;
                        }
                    }
                }
                if let Some(v) = &mut cmd.code {
                    self.events_in_flight().for_each(|e| v.observe(e));
                }
            }
            TokenCommand::Refresh(cmd) => {
                cmd.token = self
                    .views
                    .refresh(cmd.token_hash.as_str())
                    .map_err(unavailable)?;
                if cmd.token.is_none() {
                    // A refresh token from before keyed hashes, as for codes above.
                    if let Some(legacy) = cmd.legacy_token_hash.take() {
                        cmd.token = self.views.refresh(legacy.as_str()).map_err(unavailable)?;
                        if cmd.token.is_some() {
                            cmd.token_hash = legacy;
                        }
                    }
                }
                if let Some(v) = &mut cmd.token {
                    self.events_in_flight().for_each(|e| v.observe(e));
                }
            }
            TokenCommand::IssueCode(domain::grant::IssueCode { request, .. })
            | TokenCommand::IssueImplicit(domain::grant::IssueImplicit { request, .. }) => {
                let mut view = self
                    .views
                    .consent(&request.user_id, &self.client_id)
                    .map_err(unavailable)?;
                self.events_in_flight()
                    .for_each(|e| view.observe(request.user_id, e));
                request.existing_consent = view;
                if let Some(pushed) = &mut request.pushed {
                    pushed.view = self
                        .views
                        .pushed(pushed.request_uri_hash.as_str())
                        .map_err(unavailable)?;
                    if let Some(v) = &mut pushed.view {
                        self.events_in_flight().for_each(|e| v.observe(e));
                    }
                }
            }
            TokenCommand::DecideDevice(cmd) => {
                let hash = cmd
                    .device
                    .as_ref()
                    .map(|d| d.started.device_code_hash.clone());
                cmd.device = match hash {
                    Some(h) => self.views.device(h.as_str()).map_err(unavailable)?,
                    None => None,
                };
                if let Some(v) = &mut cmd.device {
                    self.events_in_flight().for_each(|e| v.observe(e));
                }
                let mut consent = self
                    .views
                    .consent(&cmd.user_id, &self.client_id)
                    .map_err(unavailable)?;
                self.events_in_flight()
                    .for_each(|e| consent.observe(cmd.user_id, e));
                cmd.existing_consent = consent;
            }
            TokenCommand::PollDevice(cmd) => {
                cmd.device = self
                    .views
                    .device(cmd.device_code_hash.as_str())
                    .map_err(unavailable)?;
                if let Some(v) = &mut cmd.device {
                    self.events_in_flight().for_each(|e| v.observe(e));
                }
                cmd.pace = self.device_pace.get(&cmd.device_code_hash).copied();
            }
            TokenCommand::Revoke(domain::token::RevokeToken { token: Some(t), .. }) => {
                self.events_in_flight().for_each(|e| t.observe(e))
            }
            TokenCommand::AuthenticateByAssertion(accept)
            | TokenCommand::JwtBearer(domain::assertion::JwtBearerGrant { accept, .. }) => {
                let a = &accept.assertion;
                let client = self.client_id.as_str();
                accept.seen = self
                    .views
                    .assertion_seen(&self.client_id, &a.issuer, &a.jti, accept.now)
                    .map_err(unavailable)?
                    || self.events_in_flight().any(|e| {
                        matches!(e, Event::JwtAssertionAccepted(r)
                            if r.bars(client, &a.issuer, &a.jti, accept.now))
                    });
            }
            _ => {}
        }
        if let TokenCommand::Saml2Bearer(cmd) = command {
            let a = &cmd.assertion;
            let client = self.client_id.as_str();
            cmd.seen = self
                .views
                .assertion_seen(
                    &self.client_id,
                    &domain::saml::issuer_key(&a.issuer),
                    &a.id,
                    cmd.now,
                )
                .map_err(unavailable)?
                || self.events_in_flight().any(|e| {
                    matches!(e, Event::SamlAssertionAccepted(r)
                        if r.bars(client, &a.issuer, &a.id, cmd.now))
                });
        }
        if let Some(proof) = command.dpop_proof_mut() {
            let issuer = domain::dpop::issuer_key(&proof.jkt);
            // Seen as of the proof's iat: a record is then kept for longer, never shorter.
            let now = proof.expires_at - domain::dpop::MAX_AGE_SECS - domain::dpop::LEEWAY_SECS;
            proof.seen = self
                .views
                .assertion_seen(&self.client_id, &issuer, &proof.jti, now)
                .map_err(unavailable)?
                || self.events_in_flight().any(|e| {
                    matches!(e, Event::DpopProofAccepted(r)
                        if r.bars(&self.client_id, &proof.jkt, &proof.jti, now))
                });
        }
        Ok(())
    }
}

impl Handler<ExecuteTokenCommand> for ClientActor {
    type Result = ResponseActFuture<Self, CommandResult>;

    fn handle(&mut self, mut msg: ExecuteTokenCommand, _ctx: &mut Self::Context) -> Self::Result {
        self.last_used = Instant::now();
        if let Some(refused) = self.refuse_while_recovering() {
            return refused;
        }
        if let Err(e) = self.fill_views(&mut msg.command) {
            return Box::pin(fut::ready(Err(e)));
        }
        let decided = token::decide(&self.state, &msg.command);
        if let TokenCommand::PollDevice(p) = &msg.command {
            self.note_poll(p, &decided);
        }
        let (events, refusal) = match decided {
            Ok(events) => (events, None),
            Err(refusal) if refusal.record.is_empty() => {
                return Box::pin(fut::ready(Err(refusal.error.into())))
            }
            // Refused, but the refusal itself is recorded (a replayed code, a reused refresh
            // token): the answer waits until the record is durable.
            Err(refusal) => (refusal.record, Some(refusal.error)),
        };
        if events.is_empty() {
            return self.nothing_to_append(msg.metadata);
        }
        // A decision that holds whatever else the stream holds lands wherever the stream is:
        // another node issuing for this client at the same time is no conflict.
        let expected = if refusal.is_none() && msg.command.independent_of_stream() {
            crate::store::ANY_VERSION
        } else {
            self.tokens_version
        };
        self.tokens_version += events.len() as u64;
        let appended = self.append(self.tokens_stream.clone(), expected, events, msg.metadata);
        match refusal {
            None => appended,
            Some(error) => Box::pin(appended.map(move |result, _, _| match result {
                Ok(_) => Err(CommandError::Token(error)),
                Err(e) => Err(e),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Read models that know nothing: these tests issue client_credentials tokens only.
    struct NoViews;

    impl super::GrantViews for NoViews {
        fn code(&self, _: &str) -> Result<Option<domain::grant::CodeView>, ProjectionError> {
            Ok(None)
        }
        fn refresh(&self, _: &str) -> Result<Option<domain::grant::RefreshView>, ProjectionError> {
            Ok(None)
        }
        fn consent(
            &self,
            _: &domain::values::UserId,
            _: &ClientId,
        ) -> Result<domain::grant::ConsentView, ProjectionError> {
            Ok(Default::default())
        }
        fn assertion_seen(
            &self,
            _: &ClientId,
            _: &str,
            _: &str,
            _: i64,
        ) -> Result<bool, ProjectionError> {
            Ok(false)
        }
    }

    use super::*;
    use crate::store::{Log, PendingAppend, Subscription};
    use domain::client::RegisterClient;
    use domain::token::IssueClientCredentialsToken;
    use domain::values::{GrantType, HashKey, TokenFormat};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A store whose next append fails once when asked to, as a full disk would, that counts
    /// reads of streams, and whose appends, once `gated`, are written at once but answered only
    /// when the gate gives a permit: a command durable in the log while its actor still waits.
    struct FlakyStore {
        inner: Log,
        fail_next: AtomicBool,
        stream_reads: std::sync::atomic::AtomicUsize,
        gated: AtomicBool,
        gate: Arc<tokio::sync::Semaphore>,
        gated_appends: std::sync::atomic::AtomicUsize,
    }

    impl FlakyStore {
        fn new(inner: Log) -> Self {
            Self {
                inner,
                fail_next: AtomicBool::new(false),
                stream_reads: Default::default(),
                gated: AtomicBool::new(false),
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
                gated_appends: Default::default(),
            }
        }
    }

    impl EventStore for FlakyStore {
        fn append(&self, stream: &str, expected: u64, events: Vec<NewEvent>) -> PendingAppend {
            if self.fail_next.swap(false, Ordering::SeqCst) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Err(StoreError::Unavailable("disk full".into())));
                return PendingAppend::new(rx);
            }
            let pending = self.inner.append(stream, expected, events);
            if !self.gated.load(Ordering::SeqCst) {
                return pending;
            }
            self.gated_appends.fetch_add(1, Ordering::SeqCst);
            let gate = self.gate.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let outcome = pending.await;
                let _permit = gate.acquire().await;
                let _ = tx.send(outcome);
            });
            PendingAppend::new(rx)
        }
        fn read_stream(&self, s: &str, v: u64) -> Result<Vec<RecordedEvent>, StoreError> {
            self.stream_reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read_stream(s, v)
        }
        fn read_all(&self, p: u64, l: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            self.inner.read_all(p, l)
        }
        fn stream_version(&self, s: &str) -> Result<u64, StoreError> {
            self.inner.stream_version(s)
        }
        fn head_position(&self) -> u64 {
            self.inner.head_position()
        }
        fn subscribe(&self, after: u64) -> Result<Subscription, StoreError> {
            self.inner.subscribe(after)
        }
        fn save_snapshot(&self, s: &str, v: u64, b: &[u8]) -> Result<(), StoreError> {
            self.inner.save_snapshot(s, v, b)
        }
        fn load_snapshot(&self, s: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
            self.inner.load_snapshot(s)
        }
    }

    fn issue() -> ExecuteTokenCommand {
        ExecuteTokenCommand {
            command: TokenCommand::IssueClientCredentials(IssueClientCredentialsToken {
                requested_scopes: None,
                token: domain::grant::NewAccessToken {
                    jti: uuid::Uuid::now_v7(),
                    opaque_token_hash: HashKey::for_tests().hash("x"),
                    kid: None,
                    dpop: None,
                    resources: Vec::new(),
                },
                now: 1_800_000_000,
            }),
            metadata: Metadata::system(),
        }
    }

    fn restore(id: ClientId, store: Arc<dyn EventStore>) -> Result<ClientActor, StoreError> {
        ClientActor::restore(id, store, Arc::new(NoViews), Duration::from_secs(60))
    }

    /// A started actor whose client is registered.
    async fn start_registered(id: &ClientId, store: Arc<dyn EventStore>) -> Addr<ClientActor> {
        let addr = restore(id.clone(), store).unwrap().start();
        register(&addr, id).await;
        addr
    }

    async fn register(addr: &Addr<ClientActor>, id: &ClientId) {
        addr.send(ExecuteClientCommand {
            command: ClientCommand::Register(RegisterClient {
                client_id: id.clone(),
                name: "svc".into(),
                public: false,
                secret_hash: Some(HashKey::for_tests().hash("s")),
                redirect_uris: vec![],
                grant_types: vec![GrantType::ClientCredentials],
                scopes: vec![],
                token_format: TokenFormat::Opaque,
                access_token_ttl_secs: 60,
                can_introspect: false,
                redirect_uri_matching: Default::default(),
                allow_plain_pkce: false,
                signing_alg: None,
                auth_method: None,
                jwks: None,
                trusted_issuers: vec![],
                admin: false,
                oidc: Default::default(),
                dynamic: None,
                imported: None,
                extensions: Default::default(),
            }),
            metadata: Metadata::system(),
        })
        .await
        .unwrap()
        .unwrap();
    }

    #[actix_rt::test]
    async fn a_failed_append_fails_its_command_and_the_actor_recovers_while_independent_tokens_land(
    ) {
        let store = Arc::new(FlakyStore::new(Log::in_memory().unwrap()));
        let id = ClientId::parse("svc").unwrap();
        let addr = start_registered(&id, store.clone()).await;

        // A command pipelined behind a failing append: the failed one is not acknowledged; a
        // client_credentials token rests on nothing the failed append would have written, so
        // it lands at whatever version the stream is at (ANY_VERSION).
        store.fail_next.store(true, Ordering::SeqCst);
        let first = addr.send(issue());
        let second = addr.send(issue());
        assert!(matches!(
            first.await.unwrap(),
            Err(CommandError::Store(StoreError::Unavailable(_)))
        ));
        let landed = second.await.unwrap().unwrap();
        assert_eq!(landed[0].version, 1);
        assert_eq!(store.stream_version("tokens-svc").unwrap(), 1);

        // The actor restored itself and decides against the durable version again.
        let ok = addr.send(issue()).await.unwrap().unwrap();
        assert_eq!(ok[0].version, 2);
        let ok = addr.send(issue()).await.unwrap().unwrap();
        assert_eq!(ok[0].version, 3);
    }

    #[actix_rt::test]
    async fn an_actor_restores_from_its_snapshot_without_folding_token_events() {
        let store: Arc<dyn EventStore> = Arc::new(Log::in_memory().unwrap());
        let id = ClientId::parse("svc").unwrap();
        let deleted = domain::Event::ClientDeleted(domain::event::ClientDeleted {
            client_id: id.clone(),
        });
        // Forty events that fold to "deleted", and a snapshot at version 40 that says otherwise:
        // restoring must take the snapshot and fold nothing before it.
        let events = (0..40)
            .map(|_| NewEvent {
                event: deleted.clone(),
                metadata: Metadata::system(),
            })
            .collect();
        store.append("client-svc", 0, events).await.unwrap();
        let snapshot_state = ClientState::Unregistered;
        let mut bytes = Vec::new();
        ciborium::into_writer(&snapshot_state, &mut bytes).unwrap();
        store.save_snapshot("client-svc", 40, &bytes).unwrap();
        let actor = restore(id.clone(), store.clone()).unwrap();
        assert_eq!(actor.config_version, 40);
        assert_eq!(actor.state, ClientState::Unregistered);
        assert_eq!(actor.tokens_version, 0);

        // A snapshot ahead of its stream (never durable) is ignored: everything is folded.
        store.save_snapshot("client-svc", 41, &bytes).unwrap();
        let actor = restore(id.clone(), store.clone()).unwrap();
        assert_eq!(actor.config_version, 40);
        assert!(matches!(actor.state, ClientState::Deleted(_)));
        // So is one in an older format (JSON, before snapshots were CBOR).
        let json = serde_json::to_vec(&snapshot_state).unwrap();
        store.save_snapshot("client-svc", 40, &json).unwrap();
        let actor = restore(id, store).unwrap();
        assert!(matches!(actor.state, ClientState::Deleted(_)));
    }

    #[actix_rt::test]
    async fn a_snapshot_is_compact_cbor_that_restores_the_same_client() {
        let store = Arc::new(Log::in_memory().unwrap());
        let id = ClientId::parse("svc").unwrap();
        let addr = start_registered(&id, store.clone()).await;
        drop(addr);
        let mut actor = restore(id.clone(), store.clone()).unwrap();
        let live = actor.state.clone();
        assert!(matches!(live, ClientState::Active(_)));
        actor.snapshot();
        let (version, bytes) = store.load_snapshot("client-svc").unwrap().unwrap();
        assert_eq!(version, actor.config_version);
        let json = serde_json::to_vec(&live).unwrap();
        assert!(
            bytes.len() < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        let back: ClientState = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert_eq!(back, live);
        assert_eq!(restore(id, store).unwrap().state, live);
    }

    #[actix_rt::test]
    async fn a_revocation_that_records_nothing_answers_only_after_the_pending_one_is_durable() {
        let store = Arc::new(Log::in_memory().unwrap());
        let id = ClientId::parse("svc").unwrap();
        let addr = start_registered(&id, store.clone()).await;
        let mut revoked = 0;
        for _ in 0..20 {
            let issued = addr.send(issue()).await.unwrap().unwrap();
            let domain::Event::AccessTokenIssued(t) = &issued[0].event else {
                panic!("expected a token");
            };
            let revoke = ExecuteTokenCommand {
                command: TokenCommand::Revoke(domain::token::RevokeToken {
                    token: Some(domain::token::KnownToken {
                        jti: t.jti,
                        client_id: id.clone(),
                        revoked: false,
                        refresh_family: None,
                    }),
                    reason: domain::event::RevocationReason::RevokedByClient,
                }),
                metadata: Metadata::system(),
            };
            let before = store.stream_version("tokens-svc").unwrap();
            let first = addr.send(revoke.clone());
            let second = addr.send(revoke);
            let second = second.await.unwrap().unwrap();
            assert!(second.is_empty(), "the second revocation records nothing");
            // By the time it answers, the first one's event is durable.
            assert_eq!(store.stream_version("tokens-svc").unwrap(), before + 1);
            assert_eq!(first.await.unwrap().unwrap().len(), 1);
            revoked += 1;
        }
        assert_eq!(store.stream_version("tokens-svc").unwrap(), 2 * revoked);
    }

    /// A log whose commit hook feeds in-memory read models.
    fn projected() -> (Arc<FlakyStore>, Arc<projections::ReadModels>) {
        let models = Arc::new(projections::ReadModels::open(&projections::NoCheckpoints).unwrap());
        let hook = models.clone();
        let inner = Log::start(
            Arc::new(crate::store::MemoryMedium::new()),
            Box::new(move |events| hook.apply(events).unwrap()),
            &crate::clock::Clock::system(),
        )
        .unwrap();
        (Arc::new(FlakyStore::new(inner)), models)
    }

    #[actix_rt::test]
    async fn an_actor_restores_from_the_directory_row_without_reading_the_log() {
        let (store, models) = projected();
        let id = ClientId::parse("svc").unwrap();
        let first = ClientActor::restore(
            id.clone(),
            store.clone(),
            models.clone(),
            Duration::from_secs(60),
        )
        .unwrap()
        .start();
        register(&first, &id).await;
        first.send(issue()).await.unwrap().unwrap();
        let reads = store.stream_reads.load(Ordering::SeqCst);
        let again =
            ClientActor::restore(id.clone(), store.clone(), models, Duration::from_secs(60))
                .unwrap()
                .start();
        assert_eq!(store.stream_reads.load(Ordering::SeqCst), reads);
        // It knows the client and the token stream's version.
        let issued = again.send(issue()).await.unwrap().unwrap();
        assert_eq!(issued[0].version, 2);
    }

    /// A registry over `store` whose actors stay while idle, with `limit` live at most.
    fn registry(
        store: Arc<FlakyStore>,
        models: Arc<projections::ReadModels>,
        limit: usize,
    ) -> Arc<crate::actors::registry::Registry> {
        crate::actors::registry::Registry::with_limit(
            store,
            models,
            Duration::from_secs(600),
            limit,
        )
    }

    /// Yields until `done` holds (bounded: a test that waits forever fails instead).
    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the condition never held");
    }

    /// Found by the SIGTERM-under-load test: actors ran on the HTTP worker that first asked
    /// for them, and a server stopping stops its idle workers first, dropping the commands
    /// their actors were deciding for the other workers' requests. The registry then decided
    /// each again, and one token was recorded twice. Actors now run on the registry's own
    /// threads.
    #[actix_rt::test]
    async fn a_command_in_flight_outlives_the_worker_that_started_its_actor() {
        let (store, models) = projected();
        let registry = registry(store.clone(), models, 10);
        let id = ClientId::parse("worker-started").unwrap();
        start_registered(&id, store.clone()).await;
        // A first request, served on a worker, starts the registry's actor for the client.
        let worker = Arbiter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (r, i) = (registry.clone(), id.clone());
        worker.spawn(async move {
            let _ = tx.send(r.send(&i, issue()).await.is_ok());
        });
        assert!(rx.await.unwrap());
        // A second request, on another worker, is in flight: its event is in the log, its
        // actor waits for the answer. Then the first worker stops.
        store.gated.store(true, Ordering::SeqCst);
        let in_flight = {
            let (r, i) = (registry.clone(), id.clone());
            actix_rt::spawn(async move { r.send(&i, issue()).await })
        };
        until(|| store.gated_appends.load(Ordering::SeqCst) == 1).await;
        worker.stop();
        worker.join().unwrap();
        store.gate.add_permits(10);
        let events = in_flight.await.unwrap().unwrap();
        assert_eq!(events[0].version, 2, "the second token follows the first");
        assert_eq!(
            store.gated_appends.load(Ordering::SeqCst),
            1,
            "the command was decided and appended once"
        );
        assert_eq!(store.stream_version(&events[0].stream).unwrap(), 2);
    }

    #[actix_rt::test]
    async fn the_registry_keeps_live_actors_near_its_bound() {
        let (store, models) = projected();
        let registry = registry(store.clone(), models, 10);
        for n in 0..40 {
            let id = ClientId::parse(&format!("c{n}")).unwrap();
            let addr = restore(id.clone(), store.clone()).unwrap().start();
            register(&addr, &id).await;
            registry.send(&id, issue()).await.unwrap();
        }
        // The actors asked to retire stop on the registry's threads.
        until(|| registry.live() <= 12).await;
    }

    #[actix_rt::test]
    async fn a_client_whose_actor_was_asked_to_retire_is_still_served() {
        let (store, models) = projected();
        let registry = registry(store.clone(), models, 2);
        let ids: Vec<ClientId> = (0..4)
            .map(|n| ClientId::parse(&format!("r{n}")).unwrap())
            .collect();
        for id in &ids {
            let addr = restore(id.clone(), store.clone()).unwrap().start();
            register(&addr, id).await;
        }
        // r0 and r1 fill the bound; r2 asks r0 to retire; r0 is used again before it stops.
        for id in &ids[..3] {
            registry.send(id, issue()).await.unwrap();
        }
        let again = registry.send(&ids[0], issue()).await.unwrap();
        assert_eq!(again[0].version, 2, "r0's second token follows its first");
        registry.send(&ids[3], issue()).await.unwrap();
        until(|| registry.live() <= 3).await;
    }

    #[actix_rt::test]
    async fn an_idle_actor_stops_and_tells_its_registry() {
        let store: Arc<dyn EventStore> = Arc::new(Log::in_memory().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let _addr = ClientActor::restore(
            ClientId::parse("svc").unwrap(),
            store,
            Arc::new(NoViews),
            Duration::from_millis(100),
        )
        .unwrap()
        .on_stop(move |id, _| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(id.to_string());
            }
        })
        .start();
        let stopped = tokio::time::timeout(Duration::from_secs(5), rx).await;
        assert_eq!(stopped.unwrap().unwrap(), "svc");
    }
}
