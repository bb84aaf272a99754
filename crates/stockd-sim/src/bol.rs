//! bol.com Retailer API simulator.
//!
//! Emulated: the client-credentials token endpoint (`POST /token`) with expiring JWT-shaped
//! tokens; Bearer auth and vnd media-type negotiation; Problem error bodies; offers with
//! `amount`/`correctedStock`/`managedByRetailer`; the v10 stock PUT that answers 202 +
//! ProcessStatus and applies the stock only when the process reaches SUCCESS; the
//! process-status endpoints (single, by entity, bulk) with expiry; v10 and v11
//! `GET /retailer/offers/{id}` and the synchronous v11 PATCH; `GET /retailer/orders` (FBR, 50
//! a page, filters) and `GET /retailer/orders/{id}`; customer cancellation requests and
//! `PUT /retailer/orders/cancellation`; `GET /retailer/returns` (unhandled FBR returns the
//! operator registers after shipping an order); the v10 offers export (`POST
//! /retailer/offers/export` → process status → CSV file, see `export`); per-endpoint rate-limit buckets with 429 +
//! `Retry-After`.
//!
//! Sources:
//! - Retailer API v10 and shared (process status) v10 OpenAPI documents, copied in `specs/bol/`
//!   from <https://api.bol.com/retailer/public/apispec/Retailer%20API%20-%20v10>; Offers API
//!   v11 from <https://api.bol.com/registry/api-definitions/offers/offers-v11.yaml>.
//! - Authentication: <https://api.bol.com/retailer/public/Retailer-API/authentication.html>.
//! - Offers export: <https://api.bol.com/retailer/public/Retailer-API/demo/v10-OFFERS.html>.
//! - Offers and stock: <https://api.bol.com/retailer/public/Retailer-API/v3/functional/offers.html>,
//!   <https://api.bol.com/retailer/public/Retailer-API/v11/functional/offer-api/whats-new-in-this-api.html>.
//! - Versions: <https://developers.bol.com/en/docs/retailer-api-migration-guide/>.
//! - Rate limits: <https://partnerplatform.bol.com/en/need-help/automate/api-rate-limits/>,
//!   live values at <https://api.bol.com/retailer/public/ratelimits>.
//!
//! Layout: `state` (offers, orders, processes and their rules), `http` (routes and the checks
//! every call passes), `auth`, `rate_limits`, one module per resource (`offers`, `orders`,
//! `processes`, `returns`, `export`), and `customers` (the shared `/_sim` operations).

mod auth;
mod customers;
mod export;
mod http;
mod offers;
mod orders;
mod processes;
mod rate_limits;
mod returns;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::common::{
    ct_eq, hmac_sha256, lock, parse_form_urlencoded, retry_after_value, serve_channel,
    serve_in_memory, sim_router, Counters, Injected, NewListing, RunningSim, SimBackend, SimCore,
    SimError, SimListing,
};
use crate::{InMemorySim, SimOptions};

/// The v10 media type (Accept and Content-Type)
pub const MEDIA_V10: &str = "application/vnd.retailer.v10+json";
/// The v11 offers media type
pub const MEDIA_V11: &str = "application/vnd.retailer.v11+json";
/// Process status also answers the advertiser media type (shared-v10.json).
const MEDIA_ADVERTISER_V10: &str = "application/vnd.advertiser.v10+json";
const PROBLEM_TYPE: &str = "https://api.bol.com/problems";
const PAGE_SIZE: usize = 50;

pub use export::MEDIA_V10_CSV;
pub use rate_limits::{default_rate_limits, RateLimit, TimeUnit};
pub use returns::{register_return, ship_order};

use state::{Bol, BolState};

/// How an asynchronous process ends (shared-v10.json `ProcessStatus.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessOutcome {
    Success,
    Failure,
    Timeout,
}

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens (299).
    pub token_ttl_secs: u64,
    /// Time a process stays PENDING before it ends.
    pub process_delay: Duration,
    /// Time after creation when a process status answers 404 (real value UNCONFIRMED).
    pub process_expiry: Duration,
    /// Whether the account has the Offers API v11 (beta, GA UNCONFIRMED).
    pub v11_enabled: bool,
    /// Per-endpoint buckets.
    pub rate_limits: Vec<RateLimit>,
    /// Process outcome per offer reference (= stockd SKU); absent means SUCCESS. The
    /// `reject_skus` fault also gives FAILURE.
    pub process_outcomes: HashMap<String, ProcessOutcome>,
    /// A customer cancellation only sets `cancellationRequest`; the item stays open until the
    /// retailer confirms it with `PUT /retailer/orders/cancellation`. When false the item is
    /// cancelled at once (the flag still tells it was the customer's request).
    pub cancel_requires_confirmation: bool,
    /// Answer an empty order page with `{}` instead of `{"orders":[]}` (UNCONFIRMED,
    /// clients must accept both).
    pub empty_orders_as_empty_object: bool,
    /// Unit price of new offers and order items.
    pub unit_price: f64,
    /// Time an offers export stays PENDING before its file is written (bol publishes none).
    pub export_delay: Duration,
    /// Time a written export file can be downloaded (UNCONFIRMED).
    pub export_retention: Duration,
    /// The shop's clock for the dates it writes (a simulated day runs on
    /// one); `None`: the system clock.
    pub clock: Option<crate::SimClock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_id: "bol-sim-client".into(),
            client_secret: "bol-sim-secret".into(),
            token_ttl_secs: 299,
            process_delay: Duration::from_millis(100),
            process_expiry: Duration::from_secs(600),
            v11_enabled: true,
            rate_limits: default_rate_limits(),
            process_outcomes: HashMap::new(),
            cancel_requires_confirmation: false,
            empty_orders_as_empty_object: true,
            unit_price: 9.99,
            export_delay: Duration::from_secs(2),
            export_retention: Duration::from_secs(3600),
            clock: None,
        }
    }
}

/// Counters specific to bol, as served by `GET /_sim/bol/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BolStats {
    pub tokens_issued: u64,
    /// Token requests made while the client still held an unexpired token (bol asks
    /// to reuse tokens until they expire).
    pub token_requests_while_valid: u64,
}

/// Token counters of a running bol simulator (`None` if `sim` is not one).
pub fn bol_stats(sim: &RunningSim) -> Option<BolStats> {
    sim.channel::<Bol>().map(|b| b.bol_stats())
}

/// One stock update in the simulator's process book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockProcess {
    pub offer_id: String,
    /// Still PENDING (not yet SUCCESS, FAILURE or TIMEOUT).
    pub pending: bool,
}

/// Every stock update (`UPDATE_OFFER_STOCK` process) the simulator took
/// and still keeps (until `process_expiry`), oldest first.
pub fn stock_processes(sim: &RunningSim) -> Vec<StockProcess> {
    let Some(b) = sim.channel::<Bol>() else {
        return Vec::new();
    };
    let mut st = lock(&b.state);
    b.settle(&mut st);
    st.processes
        .values()
        .filter(|p| p.event_type == "UPDATE_OFFER_STOCK")
        .map(|p| StockProcess {
            offer_id: p.entity_id.clone(),
            pending: p.status == state::ProcessOutcomeOrPending::Pending,
        })
        .collect()
}

/// Make later processes for the offer with this reference end with `outcome`.
pub fn set_process_outcome(sim: &RunningSim, sku: &str, outcome: ProcessOutcome) -> bool {
    match sim.channel::<Bol>() {
        Some(b) => {
            lock(&b.state).outcomes.insert(sku.to_string(), outcome);
            true
        }
        None => false,
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let sim = new_bol(config, core, format!("http://{addr}"));
    let router = http::router(sim.clone());
    serve_channel(router, listener, sim)
}

/// Start the simulator in process (see [`InMemorySim`]): `base_url` is the
/// API base and the login host both (the connector's `api_url` and
/// `login_url` may name the same simulator).
pub fn start_in_memory(config: Config, base_url: &str, options: SimOptions) -> InMemorySim {
    let core = SimCore::with_options(options);
    let sim = new_bol(config, core, base_url.to_string());
    let router = http::router(sim.clone());
    serve_in_memory(router, base_url.to_string(), sim)
}

fn new_bol(config: Config, core: Arc<SimCore>, base: String) -> Arc<Bol> {
    let jwt_key = {
        let mut k = core.rand_u64().to_be_bytes().to_vec();
        k.extend_from_slice(&core.rand_u64().to_be_bytes());
        k
    };
    let ean_base = core.rand_u64() % 1_000_000;
    Arc::new(Bol {
        state: Mutex::new(BolState {
            outcomes: config.process_outcomes.clone(),
            ean_next: ean_base * 10_000,
            process_next: 1_000_000 + core.rand_u64() % 1_000_000,
            item_next: 2_000_000_000 + core.rand_u64() % 100_000_000,
            ..BolState::default()
        }),
        config,
        core,
        base,
        jwt_key,
    })
}
