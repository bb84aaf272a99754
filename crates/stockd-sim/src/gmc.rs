//! Google Merchant Center simulator: Merchant API v1.
//!
//! Emulated: the Google OAuth token endpoint `POST /token` for the service-account JWT bearer
//! grant (RS256 signature, `iss`/`scope`/`aud`/`iat`/`exp` checks, expiring access tokens),
//! self-signed JWTs as bearer tokens (what Google's client libraries send by default), and
//! Bearer auth with Google's error JSON; Products v1 `productInputs:insert`
//! (upsert with `versionNumber` ordering), `productInputs` PATCH (`updateMask` semantics) and
//! DELETE, and processed `products` get/list that show a write only after a configurable
//! processing delay; Inventories v1 local inventories insert/list/delete, replaced by
//! `storeCode`, visible after a configurable delay; int64 fields accepted as number or
//! string and emitted as strings; per-method per-minute and per-day quotas with
//! `quota/request_rate_too_high` / `quota/daily_limit_exceeded`, the "twice per day" per-product
//! update policy and `quota/v1/…/quotas`; Content API v2.1 answering 410 Gone.
//! Merchant Center takes no orders: `buy`, `cancel` and `refund` are refused.
//!
//! Sources:
//! - Merchant API: <https://developers.google.com/merchant/api>; protos copied in `specs/gmc/`
//!   from <https://github.com/googleapis/googleapis> (`google/shopping/merchant/*/v1`).
//! - Quotas: <https://developers.google.com/merchant/api/guides/quotas-limits>.
//! - Content API sunset: <https://developers.google.com/shopping-content/guides/deprecation-and-sunset>.
//! - Service-account JWTs: <https://developers.google.com/identity/protocols/oauth2/service-account>.

mod auth;
mod codecs;
mod customers;
mod errors;
mod http;
mod inventories;
mod products;
mod quotas;
mod state;
mod validation;

use auth::*;
use codecs::*;
use errors::*;
use http::*;
use state::*;
use validation::*;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::common::{
    lock, parse_form_urlencoded, retry_after_value, serve_channel, serve_in_memory, sim_router,
    Counters, InMemorySim, Injected, NewListing, RunningSim, SimBackend, SimCore, SimError,
    SimListing, SimOptions,
};

/// The only OAuth scope the Merchant API takes.
pub const SCOPE: &str = "https://www.googleapis.com/auth/content";
/// Google's token endpoint, the `aud` a service-account JWT names.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The `aud` of a self-signed JWT access token for the Merchant API.
pub const MERCHANT_API_AUDIENCE: &str = "https://merchantapi.googleapis.com/";
/// The JWT bearer grant type (RFC 7523).
pub const JWT_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Merchant Center account id (`accounts/{account_id}`).
    pub account_id: u64,
    /// The API data source; requests must name `accounts/{account_id}/dataSources/{data_source_id}`.
    pub data_source_id: u64,
    /// `iss` the service-account JWT must carry.
    pub service_account_email: String,
    /// The service account's RSA public key: PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or DER
    /// (SubjectPublicKeyInfo or PKCS#1). `None` skips the signature check (demos without a
    /// key pair); algorithm and claims are still checked.
    pub public_key: Option<Vec<u8>>,
    /// Access-token lifetime (3600 s is UNCONFIRMED).
    pub token_ttl_secs: u64,
    /// Time before a product input write shows on the processed product ("several minutes" in
    /// reality).
    pub processing_delay: Duration,
    /// Time before a local-inventory write or delete shows ("up to 30 min" in reality).
    pub inventory_delay: Duration,
    /// Updates of one product allowed per 24 h ("twice per day"); 0 disables the check.
    pub updates_per_product_per_day: u32,
    /// Per-method requests per minute. Google publishes no numbers (quotas are adjusted
    /// automatically): this default is a choice.
    pub requests_per_minute: u32,
    /// Per-method requests per day; a choice as above.
    pub requests_per_day: u32,
    /// Content language and feed label of listings made by `add_listings`.
    pub content_language: String,
    pub feed_label: String,
    /// When set, `add_listings` also creates a local inventory at this store, listings carry
    /// `store_code` and their quantity is that store's quantity.
    pub store_code: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            account_id: 123_456_789,
            data_source_id: 10_001,
            service_account_email: "stockd@stockd-sim.iam.gserviceaccount.com".into(),
            public_key: None,
            token_ttl_secs: 3600,
            processing_delay: Duration::from_millis(100),
            inventory_delay: Duration::from_millis(100),
            updates_per_product_per_day: 2,
            requests_per_minute: 300,
            requests_per_day: 100_000,
            content_language: "nl".into(),
            feed_label: "NL".into(),
            store_code: None,
        }
    }
}

/// Counters only this channel has, next to [`crate::SimStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GmcStats {
    /// Requests to the sunset Content API v2.1 (`/content/v2.1/…`); a correct client sends none.
    pub content_api_requests: u64,
    pub tokens_issued: u64,
    /// Token requests refused (bad JWT, claims, grant type).
    pub token_rejections: u64,
    /// API requests refused for a missing, unknown or expired access token.
    pub auth_failures: u64,
    /// Product updates refused by the per-product daily policy.
    pub product_budget_violations: u64,
}

#[derive(Default)]
struct GmcCounters {
    content_api_requests: AtomicU64,
    tokens_issued: AtomicU64,
    token_rejections: AtomicU64,
    auth_failures: AtomicU64,
    product_budget_violations: AtomicU64,
}

impl GmcCounters {
    fn snapshot(&self) -> GmcStats {
        GmcStats {
            content_api_requests: self.content_api_requests.load(Ordering::Relaxed),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            token_rejections: self.token_rejections.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            product_budget_violations: self.product_budget_violations.load(Ordering::Relaxed),
        }
    }
}

/// This channel's own counters for a simulator started by [`start`] (also served at
/// `GET /_sim/gmc/stats`); `None` for any other simulator.
pub fn gmc_stats(sim: &RunningSim) -> Option<GmcStats> {
    sim.channel::<Gmc>().map(|g| g.counters.snapshot())
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let key = public_key(&config)?;
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let sim = new_gmc(config, key, core, format!("http://{addr}"));
    let router = router(sim.clone());
    serve_channel(router, listener, sim)
}

/// Start the simulator in process (see [`InMemorySim`]): `base_url` is the
/// API base and the token endpoint's host both.
pub fn start_in_memory(
    config: Config,
    base_url: &str,
    options: SimOptions,
) -> std::io::Result<InMemorySim> {
    let key = public_key(&config)?;
    let core = SimCore::with_options(options);
    let sim = new_gmc(config, key, core, base_url.to_string());
    let router = router(sim.clone());
    Ok(serve_in_memory(router, base_url.to_string(), sim))
}

/// The configured service-account key, parsed.
fn public_key(config: &Config) -> std::io::Result<Option<Vec<u8>>> {
    config
        .public_key
        .as_deref()
        .map(|raw| {
            rsa_public_key(raw).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "public_key is not an RSA public key in PEM or DER form",
                )
            })
        })
        .transpose()
}

fn new_gmc(config: Config, key: Option<Vec<u8>>, core: Arc<SimCore>, base_url: String) -> Arc<Gmc> {
    Arc::new(Gmc {
        config,
        key,
        core,
        base_url,
        counters: GmcCounters::default(),
        state: Mutex::new(State::default()),
    })
}
