//! Amazon Selling Partner API simulator.
//!
//! Emulated: LWA `POST /auth/o2/token` (refresh-token grant, expiring access tokens) and the
//! `x-amz-access-token` header on every call; per-operation token buckets with the
//! published defaults, 429 `QuotaExceeded`, `x-amzn-RequestId` and `x-amzn-RateLimit-Limit`;
//! Listings Items 2021-08-01 `patchListingsItem` (body validation, ACCEPTED applied
//! after a configurable lag, 200 INVALID with issues, VALIDATION_PREVIEW), `getListingsItem` and
//! `searchListingsItems` with `includedData`; Feeds 2021-06-30 with `JSON_LISTINGS_FEED`
//! documents uploaded to and downloaded from this simulator, IN_QUEUE → IN_PROGRESS → DONE and
//! the v2 processing report; Reports 2021-06-30 with `GET_MERCHANT_LISTINGS_ALL_DATA` (createReport
//! 202, IN_QUEUE → IN_PROGRESS → DONE after a configurable time, FATAL/CANCELLED, a five-minute
//! pre-signed document URL, GZIP, Amazon's tab-separated columns); Orders v2026-01-01 `searchOrders`/`getOrder`; and
//! ORDER_CHANGE notifications POSTed with stockd's `X-Stockd-Signature`.
//!
//! Sources:
//! - Models and schemas copied in `specs/amazon/` from
//!   <https://github.com/amzn/selling-partner-api-models> (Listings Items 2021-08-01, Feeds
//!   2021-06-30, Orders 2026-01-01, notifications); the Reports 2021-06-30 model
//!   (`models/reports-api-model/reports_2021-06-30.json` in the same repository).
//! - Reports: <https://developer-docs.amazon.com/sp-api/docs/reports-api-v2021-06-30-reference>,
//!   <https://developer-docs.amazon.com/sp-api/docs/retrieve-a-report>,
//!   <https://developer-docs.amazon.com/sp-api/docs/inventory-reports-attributes>.
//! - Rate limits: <https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>.
//! - Orders migration: <https://developer-docs.amazon.com/sp-api/docs/orders-api-migration-guide>.

// Early returns carry the finished error `Response`; boxing them would only add noise.
#![allow(clippy::result_large_err)]

mod auth;
mod customers;
mod feeds;
mod listings;
mod orders;
mod reports;
mod responses;
mod state;

use auth::*;
use customers::*;
use feeds::*;
use listings::*;
use orders::*;
use reports::*;
use responses::*;
use state::*;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::common::{
    hmac_sha256_base64, lock, parse_form_urlencoded, retry_after_value, serve, sim_router,
    Counters, Delivery, Injected, NewListing, RetryPolicy, RunningSim, SimBackend, SimCore,
    SimError, SimListing,
};

/// Amazon.nl, the marketplace of the agreed external ids.
pub const MARKETPLACE_ID: &str = "A1805IZSGTT6HS";
/// The product type of every simulated listing (agreed external id).
pub const PRODUCT_TYPE: &str = "PRODUCT";
/// listings-feed-schema-v2.json `messages.maxItems`.
pub const MAX_FEED_MESSAGES: usize = 25_000;
pub use reports::{LISTINGS_REPORT, LISTINGS_REPORT_COLUMNS};

/// One token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

/// The published usage plans, keyed by operationId.
pub fn default_rate_limits() -> BTreeMap<String, RateLimit> {
    [
        ("patchListingsItem", 5.0, 5.0),
        ("getListingsItem", 5.0, 10.0),
        ("searchListingsItems", 5.0, 5.0),
        ("createFeedDocument", 0.5, 15.0),
        ("createFeed", 0.0083, 15.0),
        ("getFeed", 2.0, 15.0),
        ("cancelFeed", 2.0, 15.0),
        ("getFeedDocument", 0.0222, 10.0),
        ("searchOrders", 0.0056, 20.0),
        ("getOrder", 0.5, 30.0),
        ("createReport", 0.0167, 15.0),
        ("getReport", 2.0, 15.0),
        ("cancelReport", 0.0222, 10.0),
        ("getReportDocument", 0.0167, 15.0),
    ]
    .into_iter()
    .map(|(k, rate, burst)| (k.to_string(), RateLimit { rate, burst }))
    .collect()
}

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub seller_id: String,
    pub marketplace_id: String,
    /// Access token lifetime (one hour).
    pub token_ttl_secs: u64,
    /// Lag between an ACCEPTED `patchListingsItem` and the quantity being visible.
    pub listing_delay: Duration,
    /// Time from `createFeed` to DONE (the first half IN_QUEUE, the second IN_PROGRESS).
    pub feed_delay: Duration,
    /// Time from `createReport` to DONE (the first half IN_QUEUE, the second IN_PROGRESS).
    pub report_delay: Duration,
    /// Serve report documents GZIP-compressed (`compressionAlgorithm: GZIP`).
    pub report_gzip: bool,
    /// Where ORDER_CHANGE notifications are POSTed (stockd's webhook endpoint).
    pub notification_url: Option<String>,
    /// Key of `X-Stockd-Signature: base64(HMAC-SHA256(secret, body))`.
    pub notification_secret: String,
    /// Redelivery delays after a failed delivery (SQS redelivers; the schedule is chosen here).
    pub notification_retry_delays: Vec<Duration>,
    pub notification_timeout: Duration,
    pub application_id: String,
    pub subscription_id: String,
    /// Token buckets per operationId; an operation missing here is not limited.
    pub rate_limits: BTreeMap<String, RateLimit>,
    pub max_feed_messages: usize,
    /// `searchOrders` pagination tokens expire after 24 h.
    pub pagination_token_ttl: Duration,
    /// The marketplace's clock for the dates it writes (orders, listings,
    /// feeds, reports); `None` = the system clock.
    pub clock: Option<crate::SimClock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_id: "amzn1.application-oa2-client.sim0123456789abcdef".into(),
            client_secret: "amzn1.oa2-cs.v1.sim0123456789abcdef".into(),
            refresh_token: "Atzr|IwEBIsim-refresh-token".into(),
            seller_id: "A2SIMSELLER0001".into(),
            marketplace_id: MARKETPLACE_ID.into(),
            token_ttl_secs: 3600,
            listing_delay: Duration::from_millis(100),
            feed_delay: Duration::from_millis(150),
            report_delay: Duration::from_millis(400),
            report_gzip: false,
            notification_url: None,
            notification_secret: "amazon-sim-notification-secret".into(),
            notification_retry_delays: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ],
            notification_timeout: Duration::from_secs(5),
            application_id: "amzn1.sellerapps.app.sim-0000-0000".into(),
            subscription_id: "sim-subscription-0001".into(),
            rate_limits: default_rate_limits(),
            max_feed_messages: MAX_FEED_MESSAGES,
            pagination_token_ttl: Duration::from_secs(24 * 3600),
            clock: None,
        }
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let sim = new_amazon(config, SimCore::new(), format!("http://{addr}"));
    let backend: Arc<dyn SimBackend> = sim.clone();
    serve(router(sim), listener, backend)
}

/// Start the simulator in process (see [`crate::InMemorySim`]): `base_url`
/// is the SP-API endpoint and the login host both (the connector's
/// `endpoint` and `lwa_url` may name the same simulator).
pub fn start_in_memory(
    config: Config,
    base_url: &str,
    options: crate::SimOptions,
) -> crate::InMemorySim {
    let sim = new_amazon(config, SimCore::with_options(options), base_url.to_string());
    crate::common::serve_in_memory(router(sim.clone()), base_url.to_string(), sim)
}

fn new_amazon(config: Config, core: Arc<SimCore>, base_url: String) -> Arc<Amazon> {
    Arc::new(Amazon {
        state: Mutex::new(AmzState::default()),
        config,
        core,
        base_url,
    })
}

fn router(sim: Arc<Amazon>) -> Router {
    let backend: Arc<dyn SimBackend> = sim.clone();
    Router::new()
        .route("/auth/o2/token", post(token_handler))
        .route(
            "/listings/2021-08-01/items/{seller_id}/{sku}",
            get(get_listing).patch(patch_listing),
        )
        .route(
            "/listings/2021-08-01/items/{seller_id}",
            get(search_listings),
        )
        .route("/feeds/2021-06-30/documents", post(create_feed_document))
        .route("/feeds/2021-06-30/documents/{id}", get(get_feed_document))
        .route("/feeds/2021-06-30/feeds", post(create_feed))
        .route(
            "/feeds/2021-06-30/feeds/{id}",
            get(get_feed).delete(cancel_feed),
        )
        .route(
            "/s3/feed-documents/{id}",
            put(upload_document).get(download_document),
        )
        .route("/reports/2021-06-30/reports", post(create_report))
        .route(
            "/reports/2021-06-30/reports/{id}",
            get(get_report).delete(cancel_report),
        )
        .route(
            "/reports/2021-06-30/documents/{id}",
            get(get_report_document),
        )
        .route("/s3/report-documents/{id}", get(download_report))
        .route("/orders/2026-01-01/orders", get(search_orders))
        .route("/orders/2026-01-01/orders/{id}", get(get_order))
        .route("/_sim/amazon/tokens", get(sim_tokens))
        .route("/_sim/amazon/feed_outcomes", post(sim_feed_outcomes))
        .route("/_sim/amazon/report_outcomes", post(sim_report_outcomes))
        .route("/_sim/amazon/orders/{id}/ship", post(sim_ship))
        .with_state(sim)
        .merge(sim_router(backend.clone()))
        .fallback(|| async {
            amz_error(StatusCode::NOT_FOUND, "NotFound", "Resource not found.", "")
        })
}
