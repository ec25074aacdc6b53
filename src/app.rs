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
    /// The listener of `/metrics` alone, when one is configured.
    metrics_server: Option<Server>,
    metrics_addr: Option<SocketAddr>,
    /// The certificate served, when serving HTTPS (reloaded on SIGHUP).
    tls: Option<Arc<crate::tls::ReloadingCert>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    addr: SocketAddr,
    data_dir: PathBuf,
    engine: Arc<Engine>,
}

/// How often the server saves checkpoints of the projections and the log's index.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Records the outcome of a walk of the whole chain in the log (stream `integrity`).
fn record_walk(
    engine: &Engine,
    outcome: &crate::store::verify::Verification,
    millis: u64,
) -> Result<(), crate::store::StoreError> {
    use crate::store::verify::Verification;
    use crate::store::NewEvent;
    use domain::event::{ChainBroken, ChainVerified, Event, INTEGRITY_STREAM};
    let event = match outcome {
        Verification::Verified {
            events,
            head_position,
            head_hash,
            ..
        } => Event::ChainVerified(ChainVerified {
            events: *events,
            head_position: *head_position,
            head_hash: head_hash.clone(),
            millis,
        }),
        Verification::Broken {
            position,
            reason,
            verified,
        } => Event::ChainBroken(ChainBroken {
            position: *position,
            reason: reason.clone(),
            verified: *verified,
        }),
    };
    let version = engine.writes.stream_version(INTEGRITY_STREAM)?;
    engine
        .writes
        .append(
            INTEGRITY_STREAM,
            version,
            vec![NewEvent {
                event,
                metadata: domain::Metadata::system(),
            }],
        )
        .wait()
        .map(|_| ())
}

/// After a start that walked only the events since the last verified mark: the whole chain,
/// on a thread of its own while the server serves, its outcome recorded in the log.
fn verify_in_background(engine: Arc<Engine>) {
    let spawned = std::thread::Builder::new()
        .name("authledger-verify".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let outcome = match engine.store.verify(|_| {}) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "the background walk of the hash chain failed");
                    return;
                }
            };
            let millis = started.elapsed().as_millis() as u64;
            match &outcome {
                crate::store::verify::Verification::Verified { events, .. } => {
                    tracing::info!(events, ms = millis, "background walk: the whole hash chain holds")
                }
                crate::store::verify::Verification::Broken {
                    position, reason, ..
                } => tracing::error!(
                    position,
                    reason,
                    "background walk: the hash chain is broken; run `authledger audit verify` and restore the data directory from a backup"
                ),
            }
            if let Err(e) = record_walk(&engine, &outcome, millis) {
                tracing::info!(error = %e, "the outcome of the background walk was not recorded");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "the background walk of the hash chain did not start");
    }
}

/// Walks the hash chain before serving; a broken chain stops the start unless allowed.
fn verify_log(engine: &Engine, full: bool, allow_unverified: bool) -> anyhow::Result<()> {
    use crate::store::verify::Verification;
    let started = std::time::Instant::now();
    let outcome = if full {
        engine.store.verify(|_| {})?
    } else {
        engine.store.verify_since_mark()?
    };
    match outcome {
        Verification::Verified {
            events, head_hash, ..
        } => {
            tracing::info!(
                events,
                head_hash,
                ms = started.elapsed().as_millis() as u64,
                "hash chain verified"
            );
            Ok(())
        }
        Verification::Broken {
            position, reason, ..
        } if allow_unverified => {
            tracing::error!(
                position,
                reason,
                "the hash chain is broken; serving read-only (--allow-unverified)"
            );
            engine.store.refuse_writes(&format!(
                "the hash chain breaks at position {position}: {reason}; serving read-only \
                 (--allow-unverified)"
            ));
            Ok(())
        }
        Verification::Broken {
            position, reason, ..
        } => Err(anyhow::anyhow!(
            "the log's hash chain breaks at position {position}: {reason}. Restore the data \
             directory from a backup, or run `authledger audit verify` to look closer; to \
             serve from it anyway, start with --allow-unverified"
        )),
    }
}

impl Application {
    /// Opens the data directory and binds; must run inside an actix system.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let opening = |e| anyhow::anyhow!("opening {}: {e}", config.data_dir.display());
        let engine = Arc::new(
            if config.allow_unverified {
                Engine::open_serving(
                    &config.data_dir,
                    config.actor_idle,
                    &crate::engine::StoreChoice::Embedded,
                    config.clock.clone(),
                    true,
                )
            } else {
                Engine::open_serving(
                    &config.data_dir,
                    config.actor_idle,
                    &config.store,
                    config.clock.clone(),
                    false,
                )
            }
            .map_err(opening)?,
        );
        // Before the projections take in anything: a tampered log must not reach them.
        verify_log(
            &engine,
            config.verify_on_start_full,
            config.allow_unverified,
        )?;
        if config.allow_unverified {
            crate::engine::catch_up_to_damage(&engine.store, &engine.models).map_err(opening)?;
        } else {
            crate::engine::catch_up(&engine.store, &engine.models, |_| {}).map_err(opening)?;
        }
        engine.start_checkpointer(CHECKPOINT_EVERY);
        let (keys, key_actor) = start_keys(&engine, &config.keys, Some(config.key_check)).await?;
        ensure_initialized(&engine).await?;
        // After the keys and the admin client: the walk's own event must not make a fresh
        // directory look like one of an earlier version.
        if !config.verify_on_start_full {
            verify_in_background(engine.clone());
        }
        let tls = config
            .tls
            .clone()
            .map(crate::tls::ReloadingCert::load)
            .transpose()?;
        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("binding {}; is another server on that port?", config.bind))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        if !config.insecure_http && !crate::tls::plain_http_allowed(&issuer) {
            anyhow::bail!(
                "the issuer {issuer} is plain http on a host other than this machine: tokens, \
                 codes and passwords would cross the network in clear. Serve HTTPS \
                 (--tls-cert and --tls-key), or behind a proxy that terminates TLS give its \
                 https:// address as --issuer; --insecure-http serves it anyway"
            );
        }
        let session_key = http::session::SessionKey::load_or_create(&config.data_dir)?;
        let metrics = if config.metrics {
            let handle = crate::metrics::install();
            if handle.is_none() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            handle
        } else {
            None
        };
        if let Some(h) = &metrics {
            crate::metrics::start_upkeep(h.clone());
        }
        let metrics_listener = config
            .metrics_bind
            .as_deref()
            .filter(|_| config.metrics)
            .map(|bind| {
                TcpListener::bind(bind).with_context(|| {
                    format!("binding the metrics address {bind}; is another server on that port?")
                })
            })
            .transpose()?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = web::Data::new(AppState {
            engine: engine.clone(),
            keys,
            key_actor,
            whoami_scope: config.whoami_scope.clone(),
            issuer: issuer.clone(),
            grants: config.grants,
            hash_key: engine.hash_key()?.clone(),
            session_key,
            limits: http::limits::Limits::new(&config.limits, &engine.clock),
            throttle: http::throttle::Throttle::default(),
            admin_throttle: http::throttle::Throttle::default(),
            device_throttle: http::throttle::Throttle::default(),
            registration: config.registration.clone(),
            logout_notices: Arc::new(tokio::sync::Notify::new()),
            delivering: tokio::sync::Mutex::new(()),
            shutdown: shutdown_rx,
            metrics,
            metrics_here: metrics_listener.is_none(),
        });
        // Back-channel logout notices owed from before a restart go out now.
        actix_rt::spawn(http::logout::run_deliveries(state.clone()));
        let metrics_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap_fn(http::limit_pages)
                .wrap_fn(http::log_requests)
                .configure(http::configure)
        });
        let mut server = match &tls {
            Some(cert) => server.listen_rustls_0_23(listener, cert.server_config()?)?,
            None => server.listen(listener)?,
        };
        if let Some(w) = config.workers {
            server = server.workers(w);
        }
        let server = server.disable_signals().run();
        let metrics_addr = metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let metrics_server = match metrics_listener {
            Some(listener) => {
                let state = metrics_state;
                Some(
                    HttpServer::new(move || {
                        App::new()
                            .app_data(state.clone())
                            .route("/metrics", web::get().to(http::discovery::metrics))
                            .default_service(web::to(|req: actix_web::HttpRequest| async move {
                                http::not_found_answer(req.path())
                            }))
                    })
                    .workers(1)
                    .listen(listener)?
                    .disable_signals()
                    .run(),
                )
            }
            None => None,
        };
        let info = serde_json::json!({
            "pid": std::process::id(),
            "addr": addr.to_string(),
            "metrics_addr": metrics_addr.map(|a| a.to_string()),
            "url": format!("{scheme}://{addr}"),
            "issuer": issuer,
        });
        crate::fsutil::write_private(
            &config.data_dir.join(SERVER_FILE),
            info.to_string().as_bytes(),
        )?;
        tracing::info!(%addr, %issuer, data_dir = %config.data_dir.display(), "authledger listening");
        Ok(Self {
            server,
            metrics_server,
            metrics_addr,
            tls,
            shutdown,
            addr,
            data_dir: config.data_dir,
            engine,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's address, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
        let metrics = self
            .metrics_server
            .map(|m| (m.handle(), actix_rt::spawn(m)));
        // systemd's `Type=notify` (and any supervisor that sets NOTIFY_SOCKET) learns that the
        // server takes requests; without the variable this does nothing.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "telling the service manager the server is ready failed");
        }
        if let Some(cert) = self.tls.clone() {
            actix_rt::spawn(reload_on_hangup(cert));
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.shutdown.send_replace(true);
        handle.stop(true).await;
        let _ = running.await;
        if let Some((handle, running)) = metrics {
            handle.stop(true).await;
            let _ = running.await;
        }
        // Everything acknowledged is in the log already; the checkpoints make the next start
        // short.
        self.engine.close();
        let _ = std::fs::remove_file(self.data_dir.join(SERVER_FILE));
        Ok(())
    }
}

/// Reads the TLS files again at every SIGHUP; a pair that fails to load leaves the old one.
/// The service manager hears of it as systemd's reload protocol has it (`Type=notify-reload`):
/// `RELOADING=1`, then the outcome as `STATUS=` with `READY=1` once it is done.
async fn reload_on_hangup(cert: Arc<crate::tls::ReloadingCert>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the TLS certificate will not be reloaded");
        return;
    };
    while hangup.recv().await.is_some() {
        let mut starting = vec![sd_notify::NotifyState::Reloading];
        starting.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        let _ = sd_notify::notify(&starting);
        let status = match cert.reload() {
            Ok(()) => {
                tracing::info!("SIGHUP: reloaded the TLS certificate and key");
                "TLS certificate reloaded".to_owned()
            }
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(
                    error = %e,
                    "SIGHUP: the TLS certificate was not reloaded; the previous one still serves"
                );
                format!("TLS certificate not reloaded: {e}")
            }
        };
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Status(&status),
            sd_notify::NotifyState::Ready,
        ]);
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
