//! `Application`: opens a data directory (initialising a fresh one), binds the listener and
//! builds the HTTP server.

use crate::cli::init::{ensure_initialized, start_keys, SERVER_FILE};
use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::http::{self, AppState};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

/// A built, not yet running server.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    data_dir: PathBuf,
}

impl Application {
    /// Opens the data directory and binds; must run inside an actix system.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let engine = Arc::new(
            Engine::open(&config.data_dir, config.actor_idle)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", config.data_dir.display()))?,
        );
        let (keys, key_actor) = start_keys(&engine, &config.keys, Some(config.key_check)).await?;
        ensure_initialized(&engine).await?;
        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("binding {}; is another server on that port?", config.bind))?;
        let addr = listener.local_addr()?;
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        let session_key = http::session::SessionKey::load_or_create(&config.data_dir)?;
        let state = web::Data::new(AppState {
            engine: engine.clone(),
            keys,
            key_actor,
            whoami_scope: config.whoami_scope.clone(),
            issuer: issuer.clone(),
            grants: config.grants,
            session_key,
            throttle: http::throttle::Throttle::default(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap_fn(http::log_requests)
                .configure(http::configure)
        })
        .listen(listener)?;
        if let Some(w) = config.workers {
            server = server.workers(w);
        }
        let server = server.disable_signals().run();
        let info = serde_json::json!({
            "pid": std::process::id(),
            "addr": addr.to_string(),
            "issuer": issuer,
        });
        crate::fsutil::write_private(
            &config.data_dir.join(SERVER_FILE),
            info.to_string().as_bytes(),
        )?;
        tracing::info!(%addr, %issuer, data_dir = %config.data_dir.display(), "authledger listening");
        Ok(Self {
            server,
            addr,
            data_dir: config.data_dir,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully (in-flight requests finish).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        let running = actix_rt::spawn(server);
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.stop(true).await;
        let _ = running.await;
        let _ = std::fs::remove_file(self.data_dir.join(SERVER_FILE));
        Ok(())
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
