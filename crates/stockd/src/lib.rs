//! The `stockd` binary as a library: the HTTP API (the only part of stockd
//! that knows HTTP), the CLI, configuration wiring and the import commands.
//! `main.rs` only calls `cli::main`; tests start the server with `spawn`.

pub mod api;
pub mod auth;
pub mod availability;
pub mod cli;
pub mod client;
pub mod config;
pub mod connections;
pub mod console;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod import;
pub mod inbound;
pub mod input;
pub mod metrics;
pub mod outbound;
#[cfg(feature = "demo")]
pub mod simulate;
pub mod webhooks;

use crate::auth::{Auth, OpenOnPublicAddress};
use crate::config::ServeConfig;
use std::net::SocketAddr;
use stockd_store::StoreError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    OpenOnPublicAddress(#[from] OpenOnPublicAddress),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up the channel connectors: {0}")]
    Connector(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A server running in the background.
pub struct RunningServer {
    addr: SocketAddr,
    backend: &'static str,
    sync_kpis: std::sync::Arc<outbound::dispatch::SyncKpis>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The sync pipeline's delivery figures.
    pub fn sync_kpis(&self) -> std::sync::Arc<outbound::dispatch::SyncKpis> {
        self.sync_kpis.clone()
    }

    /// Stops accepting connections, finishes the requests in flight, then
    /// closes the store so that every accepted event is committed.
    pub async fn shutdown(self) -> std::io::Result<()> {
        // The server may already be gone; then there is nobody to tell.
        let _ = self.shutdown.send(());
        self.task
            .await
            .map_err(|e| std::io::Error::other(format!("server task failed: {e}")))?
    }
}

/// Opens the store, binds the listener and serves the API in the background.
pub async fn spawn(config: ServeConfig) -> Result<RunningServer, StartError> {
    let auth = Auth::for_listen(config.listen, config.tokens)?;
    let store = stockd_store::open(&config.database_url).await?;
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(source) => {
            store.close().await;
            return Err(StartError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(source) => {
            store.close().await;
            return Err(StartError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let backend = store.backend_name();
    let mut connections = match connections::build(&config.connectors) {
        Ok(c) => c,
        Err(e) => {
            store.close().await;
            return Err(StartError::Connector(e.to_string()));
        }
    };
    connections.extend(config.extra_connections.iter().cloned());
    let mut state = api::AppState::new(store.clone(), auth);
    state.listing_index = std::sync::Arc::new(
        webhooks::ListingIndex::new(config.restock_on_refund.clone())
            .with_connections(&connections),
    );
    // Listings may have been imported straight into the database while the
    // server was down: order lines kept for want of one may map now.
    tokio::spawn(webhooks::replay_unmapped_everywhere(
        store.clone(),
        state.listing_index.clone(),
    ));
    // The first page that shows availability would load the channels,
    // locations, kit graph and rules (about 0.1 s with 10,000 kits): they are
    // loaded now, beside the start-up recompute, not in a client's request.
    tokio::spawn({
        let store = store.clone();
        async move {
            if let Err(e) = availability::cached_setup(&*store).await {
                tracing::warn!(error = %e, "loading the channels, kits and rules at start failed");
            }
        }
    });
    state.connectors = std::sync::Arc::new(
        connections
            .iter()
            .map(|c| (c.channel.clone(), c.connector.clone()))
            .collect(),
    );
    let reconciler = outbound::reconcile::Reconciler::new(
        store.clone(),
        connections
            .iter()
            .map(|c| (c.channel.clone(), c.connector.clone()))
            .collect(),
        config.reconcile.clone(),
        state.sync_kpis.clone(),
    );
    state.reconciler = Some(reconciler.clone());
    let (audit_sink, audit_task) =
        outbound::audit::AuditTask::start(store.clone(), config.reconcile.audit_retention);
    let _ = state.sync_kpis.audit.set(audit_sink);
    let dispatcher = outbound::dispatch::Dispatcher::start(
        store.clone(),
        connections,
        config.retry,
        state.sync_kpis.clone(),
        state.listing_index.clone(),
    );
    let reconciling = reconciler.start();
    let inbound_nats = config.inbound.nats.clone().map(|settings| {
        inbound::nats::NatsConsumer::start(store.clone(), settings, state.inbound_kpis.clone())
    });
    state.feeds = std::sync::Arc::new(config.inbound.feeds.clone());
    let feed_scheduler = inbound::feeds::FeedScheduler::start(store.clone(), &config.inbound.feeds);
    let publisher = config.inbound.outbound_nats.clone().map(|settings| {
        let kpis = std::sync::Arc::new(outbound::publish::OutboundKpis::default());
        state.outbound_kpis = Some(kpis.clone());
        outbound::publish::Publisher::start(store.clone(), settings, kpis)
    });
    let sync_kpis = state.sync_kpis.clone();
    let stopping = state.stopping.clone();
    let app = api::router(state, config.http);
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A dropped sender also means stop.
                let _ = stop.await;
                stopping.send_replace(true);
            })
            .await;
        reconciling.stop().await;
        feed_scheduler.stop().await;
        if let Some(publisher) = publisher {
            publisher.stop().await;
        }
        if let Some(consumer) = inbound_nats {
            consumer.stop().await;
        }
        dispatcher.stop().await;
        audit_task.stop().await;
        store.close().await;
        served
    });
    Ok(RunningServer {
        addr,
        backend,
        sync_kpis,
        shutdown,
        task,
    })
}

/// Serves until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run_until_signal(server: RunningServer) -> std::io::Result<()> {
    tracing::info!(addr = %server.addr(), backend = server.backend(), "stockd listening");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight and committing accepted events");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
