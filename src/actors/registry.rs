//! The registry: finds a client's actor, starting it on first use; actors leave it when they
//! stop after an idle period, or when more than [`MAX_LIVE_ACTORS`] are live and they are the
//! least recently used.

use super::client::{ClientActor, CommandError, CommandResult, GrantViews, Retire};
use crate::store::{EventStore, StoreError};
use actix::prelude::*;
use domain::values::ClientId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Live actors above which the least recently used are asked to stop. An actor restores from
/// the client directory in microseconds, but a start and a stop per request cost a quarter
/// of a token request: with 10,000, tokens spread over 100,000 clients ran at 65% of the
/// one-client rate, with 100,000 at 84%. A live actor holds about 3 KB, so the bound keeps
/// a server with more clients than this, all active within the idle timeout, at about 300 MB.
pub const MAX_LIVE_ACTORS: usize = 100_000;

/// A live actor, when it was last used, and whether it was asked to stop.
struct Live {
    addr: Addr<ClientActor>,
    used: std::time::Instant,
    retiring: bool,
}

/// The live actors, and how many of them were asked to stop and have not yet.
#[derive(Default)]
struct Actors {
    by_client: HashMap<ClientId, Live>,
    retiring: usize,
}

/// Keeps one running actor per client.
pub struct Registry {
    store: Arc<dyn EventStore>,
    views: Arc<dyn GrantViews>,
    idle_timeout: Duration,
    actors: Mutex<Actors>,
    max_live: usize,
    me: Weak<Registry>,
    /// The threads the actors run on, made at the first start. Not the HTTP workers': a
    /// worker stops when the server does, idle ones first, and its actors with it, dropping
    /// the commands they were deciding for the other workers' requests (appended all the
    /// same): `send` would then decide them again, and record a token twice.
    arbiters: std::sync::OnceLock<Vec<ArbiterHandle>>,
}

impl Registry {
    /// A registry whose actors stop after `idle_timeout` without a command.
    pub fn new(
        store: Arc<dyn EventStore>,
        views: Arc<dyn GrantViews>,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        Self::with_limit(store, views, idle_timeout, MAX_LIVE_ACTORS)
    }

    /// [`Registry::new`] with another bound on live actors.
    pub fn with_limit(
        store: Arc<dyn EventStore>,
        views: Arc<dyn GrantViews>,
        idle_timeout: Duration,
        max_live: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            store,
            views,
            idle_timeout,
            actors: Mutex::new(Actors::default()),
            max_live: max_live.max(1),
            me: me.clone(),
            arbiters: std::sync::OnceLock::new(),
        })
    }

    /// Live actors now (including any asked to stop that have not yet).
    pub fn live(&self) -> usize {
        self.actors.lock().map(|a| a.by_client.len()).unwrap_or(0)
    }

    fn address(&self, client_id: &ClientId) -> Result<Addr<ClientActor>, CommandError> {
        let mut actors = self
            .actors
            .lock()
            .map_err(|_| CommandError::Unavailable("registry lock poisoned".into()))?;
        if let Some(live) = actors.by_client.get_mut(client_id) {
            if live.addr.connected() {
                live.used = std::time::Instant::now();
                return Ok(live.addr.clone());
            }
        }
        // Those already asked to stop do not count: without this, every start until they had
        // stopped would sort the whole map again and ask the same ones again.
        if actors.by_client.len() - actors.retiring >= self.max_live {
            // The least recently used tenth is asked to stop; each leaves the map as it does.
            let mut by_use: Vec<(std::time::Instant, &mut Live)> = actors
                .by_client
                .values_mut()
                .filter(|l| !l.retiring)
                .map(|l| (l.used, l))
                .collect();
            // Only the oldest tenth needs finding, not the order of all of them: O(n), where a
            // sort of 100,000 entries held the registry (and the request) for milliseconds.
            let tenth = (self.max_live / 10 + 1).min(by_use.len());
            if tenth < by_use.len() {
                by_use.select_nth_unstable_by_key(tenth, |(t, _)| *t);
            }
            let mut asked = 0;
            for (_, live) in by_use.into_iter().take(tenth) {
                live.retiring = true;
                live.addr.do_send(Retire);
                asked += 1;
            }
            actors.retiring += asked;
        }
        let me = self.me.clone();
        let actor = ClientActor::restore(
            client_id.clone(),
            self.store.clone(),
            self.views.clone(),
            self.idle_timeout,
        )?
        .on_stop(move |id, addr| {
            if let Some(registry) = me.upgrade() {
                registry.forget(id, addr);
            }
        });
        let addr = self.start(client_id, actor);
        let live = Live {
            addr: addr.clone(),
            used: std::time::Instant::now(),
            retiring: false,
        };
        if let Some(old) = actors.by_client.insert(client_id.clone(), live) {
            // A stopped actor's entry, replaced before its stop reached `forget`.
            actors.retiring -= usize::from(old.retiring);
        }
        Ok(addr)
    }

    /// Starts `actor` on its client's arbiter (one per core, chosen by the client id, so that
    /// clients spread over them as they did over the workers).
    fn start(&self, client_id: &ClientId, actor: ClientActor) -> Addr<ClientActor> {
        let arbiters = self.arbiters.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get());
            (0..n).map(|_| Arbiter::new().handle()).collect()
        });
        let pick = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            client_id.hash(&mut h);
            (h.finish() % arbiters.len() as u64) as usize
        };
        ClientActor::start_in_arbiter(&arbiters[pick], move |_| actor)
    }

    fn forget(&self, client_id: &ClientId, addr: &Addr<ClientActor>) {
        if let Ok(mut actors) = self.actors.lock() {
            if actors.by_client.get(client_id).map(|l| &l.addr) == Some(addr) {
                if let Some(old) = actors.by_client.remove(client_id) {
                    actors.retiring -= usize::from(old.retiring);
                }
            }
        }
    }

    /// Sends a command to the client's actor, starting it if needed. A command that meets an
    /// actor just stopping is sent again to a fresh one; it was never decided. One whose
    /// append lost to another node's write of the same stream (a shared log) is decided again
    /// once the actor has reloaded: the store answers the conflict only after this node's copy
    /// holds the write that won.
    pub async fn send<M>(&self, client_id: &ClientId, msg: M) -> CommandResult
    where
        M: Message<Result = CommandResult> + Clone + Send + 'static,
        ClientActor: Handler<M>,
    {
        let mut last = CommandError::Unavailable("actor stopped".into());
        let mut pause = Duration::from_millis(1);
        for _ in 0..DECIDE_AGAIN {
            let addr = self.address(client_id)?;
            match addr.send(msg.clone()).await {
                Ok(Err(e @ CommandError::Store(StoreError::Conflict { .. }))) => {
                    // Lost a race for the stream. On a shared log the winner's events reach
                    // this node's copy a little later; deciding again at once, eight times in
                    // a row, can outrun the copy and answer 503 for a plain refusal (seen in
                    // CI: two nodes racing for one refresh token).
                    last = e;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(Err(CommandError::Recovering)) => {
                    // Its other appends are still on their way; the reload follows them.
                    last = CommandError::Recovering;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(result) => return result,
                Err(MailboxError::Closed) => {
                    self.forget(client_id, &addr);
                    last = CommandError::Unavailable("actor stopped".into());
                }
                Err(MailboxError::Timeout) => {
                    return Err(CommandError::Unavailable("actor timed out".into()))
                }
            }
        }
        Err(last)
    }
}

/// How often a command is decided again after its append lost a race (or met a reloading
/// actor) before the conflict is the answer.
const DECIDE_AGAIN: usize = 8;
