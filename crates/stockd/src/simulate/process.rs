//! stockd as one process of the simulated day: its store handle, API and
//! dispatcher on the day's database. A crash drops all of it at once (the
//! API stops answering, pushes under way are abandoned where they are); a
//! restart opens the same database again with new connectors, a new
//! listing index and a new dispatcher, as a restarted `stockd serve` would.

use super::{setup, Api, RouterCell, SimulateError};
use crate::outbound::dispatch::{Connection, DispatchOptions, Dispatcher, SyncKpis};
use std::sync::Arc;
use std::time::Duration;

/// What every start of the process shares: the database, the clock, where
/// webhooks reach it, and the figures the report reads (kept across
/// restarts by the harness, not by stockd).
pub(super) struct Wiring {
    pub(super) path: String,
    pub(super) clock: stockd_store::Clock,
    pub(super) router: RouterCell,
    pub(super) kpis: Arc<SyncKpis>,
    pub(super) seed: u64,
}

/// A running process.
pub(super) struct Process {
    pub(super) store: Arc<dyn stockd_store::Store>,
    pub(super) api: Api,
    index: Arc<crate::webhooks::ListingIndex>,
    connections: Vec<Connection>,
    dispatcher: Option<Dispatcher>,
}

fn plain() -> crate::config::ServeConfig {
    crate::config::ServeConfig::plain(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        String::new(),
    )
}

impl Wiring {
    /// Opens the store and serves the API (webhooks reach it from now on);
    /// the dispatcher starts with [`Process::dispatch`].
    pub(super) fn open(&self, connections: Vec<Connection>) -> Result<Process, SimulateError> {
        let store = stockd_store::open_simulated(&self.path, self.clock.clone()).map_err(setup)?;
        let auth = crate::auth::Auth::for_listen(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Vec::new(),
        )
        .map_err(setup)?;
        let mut state = crate::api::AppState::new(store.clone(), auth);
        let index = Arc::new(
            crate::webhooks::ListingIndex::new(Default::default()).with_connections(&connections),
        );
        state.listing_index = index.clone();
        state.connectors = Arc::new(
            connections
                .iter()
                .map(|c| (c.channel.clone(), c.connector.clone()))
                .collect(),
        );
        state.sync_kpis = self.kpis.clone();
        state.console_live = false;
        let router = crate::api::router(state, plain().http);
        if let Ok(mut up) = self.router.write() {
            *up = Some(router.clone());
        }
        Ok(Process {
            store,
            api: Api { router },
            index,
            connections,
            dispatcher: None,
        })
    }
}

impl Process {
    /// Starts the dispatcher once the start-up recompute is done; `start`
    /// counts the process's starts (each dispatcher its own jitter).
    pub(super) async fn dispatch(&mut self, w: &Wiring, start: u64) {
        // The start-up recompute runs on the writer's thread in real time.
        // This thread waits for it without yielding, so no simulated time
        // passes meanwhile: how far the day got before the dispatcher starts
        // must not depend on how fast the machine is (a seed's report would
        // differ run to run). The recompute costs no simulated time.
        while !self.store.recompute_done() {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.dispatcher = Some(Dispatcher::start_with(
            self.store.clone(),
            std::mem::take(&mut self.connections),
            plain().retry,
            w.kpis.clone(),
            self.index.clone(),
            DispatchOptions {
                clock: w.clock.clone(),
                jitter_seed: Some(w.seed.wrapping_add(start.wrapping_mul(0x9E37_79B9))),
            },
        ));
    }

    /// A graceful stop at the end of the day. The router leaves the
    /// webhook path too: it holds the connectors, whose transport holds the
    /// simulators, whose webhooks hold the router — left there, that cycle
    /// kept each seed's database open and its simulators in memory for the
    /// rest of a sweep.
    pub(super) async fn stop(self, w: &Wiring) {
        if let Ok(mut up) = w.router.write() {
            *up = None;
        }
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.stop().await;
        }
        self.store.close().await;
    }

    /// A crash: the API stops answering and every task stops where it is.
    /// What the store committed stays; nothing else does.
    pub(super) async fn crash(self, w: &Wiring) {
        if let Ok(mut up) = w.router.write() {
            *up = None;
        }
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.kill();
        }
        self.store.close().await;
    }
}
