//! The registry: finds a client's actor, starting it on first use; actors leave it when they
//! stop after an idle period.

use super::client::{ClientActor, CommandError, CommandResult, GrantViews};
use crate::store::EventStore;
use actix::prelude::*;
use domain::values::ClientId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Keeps one running actor per client.
pub struct Registry {
    store: Arc<dyn EventStore>,
    views: Arc<dyn GrantViews>,
    idle_timeout: Duration,
    actors: Mutex<HashMap<ClientId, Addr<ClientActor>>>,
    me: Weak<Registry>,
}

impl Registry {
    /// A registry whose actors stop after `idle_timeout` without a command.
    pub fn new(
        store: Arc<dyn EventStore>,
        views: Arc<dyn GrantViews>,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            store,
            views,
            idle_timeout,
            actors: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    fn address(&self, client_id: &ClientId) -> Result<Addr<ClientActor>, CommandError> {
        let mut actors = self
            .actors
            .lock()
            .map_err(|_| CommandError::Unavailable("registry lock poisoned".into()))?;
        if let Some(addr) = actors.get(client_id) {
            if addr.connected() {
                return Ok(addr.clone());
            }
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
        let addr = actor.start();
        actors.insert(client_id.clone(), addr.clone());
        Ok(addr)
    }

    fn forget(&self, client_id: &ClientId, addr: &Addr<ClientActor>) {
        if let Ok(mut actors) = self.actors.lock() {
            if actors.get(client_id) == Some(addr) {
                actors.remove(client_id);
            }
        }
    }

    /// Sends a command to the client's actor, starting it if needed. A command that meets an
    /// actor just stopping is sent again to a fresh one; it was never decided.
    pub async fn send<M>(&self, client_id: &ClientId, msg: M) -> CommandResult
    where
        M: Message<Result = CommandResult> + Clone + Send + 'static,
        ClientActor: Handler<M>,
    {
        let mut last = String::new();
        for _ in 0..3 {
            let addr = self.address(client_id)?;
            match addr.send(msg.clone()).await {
                Ok(result) => return result,
                Err(MailboxError::Closed) => {
                    self.forget(client_id, &addr);
                    last = "actor stopped".into();
                }
                Err(MailboxError::Timeout) => {
                    return Err(CommandError::Unavailable("actor timed out".into()))
                }
            }
        }
        Err(CommandError::Unavailable(last))
    }
}
