//! Shopify Admin GraphQL API simulator.
//!
//! Emulated: `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`; every
//! document and its variables validated against the official Admin schema of the requested
//! version (`schema`), refused in Shopify's error shape; `inventorySetQuantities` with the
//! per-version compare-and-swap rules, `@idempotent(key:)` (2026-01+, required from 2026-04),
//! the ±1e9 bounds and 250-item input limit; `inventoryAdjustQuantities` with the
//! `ledgerDocumentUri` rules (`inventory`); reads through `inventoryItems`, `inventoryItem`,
//! `inventoryLevel`, `location(s)`, `productVariant(s)`, `node` and `nodes` (`exec`); named
//! quantities per (item, location) with
//! `on_hand = available + committed + reserved + damaged + quality_control + safety_stock`
//! (`state`); the calculated-cost leaky bucket with `extensions.cost` on every response
//! (`http`); orders, cancels and refunds from simulated customers with REST-shaped webhooks,
//! signed and retried on failure (`orders`); bulk query operations with their job lifecycle,
//! one-at-a-time rule and JSONL result files at signed URLs (`bulk`).
//!
//! Sources: <https://www.shopify.dev/api/admin> (the Admin API reference: endpoint per version,
//! access-token header), <https://shopify.dev/docs/api/admin-rest> (REST is legacy; GraphQL only).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    serve, serve_in_memory, InMemorySim, RunningSim, SimBackend, SimCore, SimOptions,
};

mod bulk;
mod document;
mod exec;
mod http;
mod inventory;
mod orders;
mod schema;
mod state;

use state::State;

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `"any"` accepts every `YYYY-MM` release version (months 01/04/07/10) and `unstable`;
    /// otherwise a comma-separated list of accepted versions. Others get 404.
    pub api_version: String,
    pub access_token: String,
    /// The app's client secret, the HMAC key of webhooks.
    pub webhook_secret: String,
    pub webhook_url: Option<String>,
    /// Subscribed topics (`orders/create`, `orders/cancelled`, `refunds/create`,
    /// `inventory_levels/update`).
    pub webhook_topics: Vec<String>,
    /// Version used to serialise webhook payloads (`X-Shopify-API-Version`).
    pub webhook_api_version: String,
    /// Delay before each retry; Shopify retries 8 times over about 4 hours
    /// (<https://shopify.dev/docs/apps/build/webhooks/delivery-structure>).
    pub webhook_retry_delays: Vec<Duration>,
    pub webhook_timeout: Duration,
    /// Delete the subscription once a delivery has failed all its retries (Admin-API
    /// subscriptions are deleted after 8 consecutive failures).
    pub delete_subscription_after_retries: bool,
    /// Leaky bucket size (`maximumAvailable`), points.
    pub bucket_size: f64,
    /// Points restored per second.
    pub restore_rate: f64,
    /// HTTP status of a THROTTLED response: 200 or 429 (UNCONFIRMED which one Shopify uses).
    pub throttle_status: u16,
    /// Single-query maximum cost (UNCONFIRMED, 3rd-party: 1000).
    pub max_query_cost: f64,
    pub shop_domain: String,
    /// Time a mutation stays "in progress" between taking its idempotency key and applying;
    /// non-zero makes `IDEMPOTENCY_CONCURRENT_REQUEST` observable.
    pub mutation_processing_time: Duration,
    /// How long a bulk operation stays `CREATED` before it runs.
    pub bulk_start_delay: Duration,
    /// Objects a running bulk operation processes per second (`objectCount` grows with it).
    pub bulk_objects_per_sec: f64,
    /// Every bulk operation fails with this `errorCode` (`TIMEOUT`,
    /// `INTERNAL_SERVER_ERROR` halfway through, with partial data; `ACCESS_DENIED` at once).
    pub bulk_failure: Option<String>,
    /// How long a bulk operation's file URL works (7 days at Shopify).
    pub bulk_url_ttl: Duration,
    /// Write `/` as `\/` in bulk files, as some of Shopify's files do.
    pub bulk_escape_slashes: bool,
    /// The shop's clock for the dates orders carry (a simulated day runs
    /// on one); `None`: the system clock.
    pub clock: Option<crate::SimClock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_version: "any".into(),
            access_token: "shpat_sim_token".into(),
            webhook_secret: "shpss_sim_secret".into(),
            webhook_url: None,
            webhook_topics: vec![
                "orders/create".into(),
                "orders/cancelled".into(),
                "refunds/create".into(),
            ],
            webhook_api_version: "2026-01".into(),
            webhook_retry_delays: (0..8).map(|i| Duration::from_secs(60 << i)).collect(),
            webhook_timeout: Duration::from_secs(5),
            delete_subscription_after_retries: true,
            bucket_size: 1000.0,
            restore_rate: 50.0,
            throttle_status: 200,
            max_query_cost: 1000.0,
            shop_domain: "stockd-sim.myshopify.com".into(),
            mutation_processing_time: Duration::ZERO,
            bulk_start_delay: Duration::from_millis(100),
            bulk_objects_per_sec: 50_000.0,
            bulk_failure: None,
            bulk_url_ttl: Duration::from_secs(7 * 24 * 3600),
            bulk_escape_slashes: false,
            clock: None,
        }
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let sim = Arc::new(Shopify {
        state: Arc::new(Mutex::new(State::new(&config))),
        config,
        core,
        base_url,
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = http::router(sim, backend.clone());
    serve(router, listener, backend)
}

/// Start the simulator in process (see [`InMemorySim`]): `base_url` is the
/// shop URL the connector is given.
pub fn start_in_memory(config: Config, base_url: &str, options: SimOptions) -> InMemorySim {
    let core = SimCore::with_options(options);
    let sim = Arc::new(Shopify {
        state: Arc::new(Mutex::new(State::new(&config))),
        config,
        core,
        base_url: base_url.to_string(),
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = http::router(sim.clone(), backend);
    serve_in_memory(router, base_url.to_string(), sim)
}

/// The simulator: its configuration, the shared framework and the shop's state.
struct Shopify {
    config: Config,
    core: Arc<SimCore>,
    state: Arc<Mutex<State>>,
    /// Where the simulator listens (the base of bulk result URLs).
    base_url: String,
}

const V2026_01: u32 = 202601;
const V2026_04: u32 = 202604;
const V2026_07: u32 = 202607;
const V2026_10: u32 = 202610;

/// `2026-01` → 202601; `unstable` → newest.
fn parse_version(v: &str) -> Option<u32> {
    if v == "unstable" {
        return Some(999_912);
    }
    let (y, m) = v.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: u32 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if !(2019..=2099).contains(&y) || ![1, 4, 7, 10].contains(&m) {
        return None;
    }
    Some(y * 100 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2026-01"), Some(202601));
        assert_eq!(parse_version("2026-02"), None);
        assert_eq!(parse_version("latest"), None);
        assert!(parse_version("unstable").unwrap() > V2026_10);
    }
}
