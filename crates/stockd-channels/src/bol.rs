//! bol.com Retailer API connector.
//!
//! Protocol details follow bol's public documentation (cited per point) and
//! its OpenAPI documents copied in `specs/bol/`: Retailer API v10
//! (`retailer-v10.json`), process status (`shared-v10.json`) and Offers API
//! v11 (`offers-v11.yaml`).
//!
//! - Auth: client-credentials token from `POST {login_url}/token` (Basic
//!   auth, `grant_type=client_credentials`,
//!   <https://api.bol.com/retailer/public/Retailer-API/authentication.html>),
//!   cached and renewed shortly before `expires_in` runs out — bol blocks
//!   clients that abuse the token endpoint
//!   (<https://api.bol.com/retailer/public/Retailer-API/best-practices.html>).
//!   A 401 on an API call renews the token once and retries.
//! - Push, v10 (default): `PUT /retailer/offers/{offer-id}/stock` with
//!   `{"amount": 0..999, "managedByRetailer": true}`
//!   (`UpdateOfferStockRequest` in `specs/bol/retailer-v10.json`); amounts
//!   above 999 are sent as 999. The 202 `ProcessStatus` is followed through
//!   `GET /shared/process-status/{id}` (`specs/bol/shared-v10.json`) every
//!   `process_poll_interval` until SUCCESS (→ `Applied`), FAILURE
//!   (→ `Permanent`, with bol's `errorMessage`) or TIMEOUT (→ `Retryable`).
//!   A status that answers 404 has expired (statuses are "only retained for
//!   a limited period", `specs/bol/shared-v10.json`): the offer's stock is
//!   read back and the item is `Applied` only when bol holds the amount
//!   sent. A process still PENDING after `process_timeout` is returned
//!   `Retryable` with code `pending`: the dispatcher sends the same absolute
//!   value again later, which is harmless (no pending handles are kept
//!   between calls). The dispatcher instead uses `submit`/`track`
//!   (`bol/tracking.rs`): the PUTs answer with process status ids that are
//!   persisted and followed in bulk, so a restart does not send them again.
//! - Push, v11 (`OffersApi::V11`): the synchronous
//!   `PATCH /retailer/offers/{offer-id}` with
//!   `{"stock":{"amount":n,"managedByRetailer":true}}` → 204
//!   (`specs/bol/offers-v11.yaml`). v11 states no bounds (UNCONFIRMED), so
//!   the v10 cap of 999 is kept.
//! - Why `managedByRetailer` is always `true`: stockd sends the sellable
//!   quantity with its own reservations already subtracted. With `false`
//!   bol would subtract all open orders again (double counting); with
//!   `true` bol subtracts only orders placed after the last update — the
//!   ones stockd may not have seen yet.
//! - bol has no compare-and-set, so `PushItem::believed` is not used.
//! - Reads: `GET /retailer/offers/{offer-id}` → `stock.amount` (v10 or v11
//!   media type). `correctedStock` is bol's own derived figure and is not
//!   reported; availability is not reported either.
//! - Orders are polled (`specs/bol/retailer-v10.json`):
//!   `GET /retailer/orders?fulfilment-method=FBR` paged, then
//!   `GET /retailer/orders/{order-id}` once per order for `offer.offerId` /
//!   `offer.reference` (the list carries only the EAN).
//!   See [`Bol::poll_orders`] for the windowing.
//! - Returns registered by customers become `Restocked` changes: see
//!   `bol/returns.rs`.
//! - Reconciliation reads the whole catalogue through the v10 offers export
//!   (`POST /retailer/offers/export` → process status → CSV): see
//!   `bol/export.rs`.
//! - Every endpoint has its own token bucket
//!   (<https://api.bol.com/retailer/public/Retailer-API/ratelimits.html>; the
//!   published figures at <https://api.bol.com/retailer/public/ratelimits> as
//!   defaults); 429 blocks the endpoint's bucket for `Retry-After`.
//! - Webhooks: bol push notifications are optional and their payload and
//!   signature format are UNCONFIRMED (`/retailer/subscriptions` in
//!   `specs/bol/retailer-v10.json` publishes signing keys, not the payload
//!   or the signature header). stockd polls bol, so every delivery is
//!   refused with `BadSignature`.

use crate::ratelimit::Limiter;
use crate::{
    BulkProgress, BulkRead, ChannelError, ChannelLevel, Connector, ErrorClass, External,
    HttpRequest, HttpResponse, ItemOutcome, LevelQuery, OrderChange, OrderChangeKind, OrderLineRef,
    OrderPoll, PushItem, Transport, WebhookAction, WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

mod export;
mod returns;
mod tracking;
mod wire;

pub use wire::stock_amount;
use wire::*;

/// Media type of v10 resources (`specs/bol/retailer-v10.json`), on `Accept`
/// and `Content-Type`.
pub const MEDIA_V10: &str = "application/vnd.retailer.v10+json";
/// Media type of the v11 Offers API (`specs/bol/offers-v11.yaml`).
pub const MEDIA_V11: &str = "application/vnd.retailer.v11+json";
/// Media type of the offers export file (`get-offer-export` in
/// `specs/bol/retailer-v10.json`), on `Accept`.
pub const MEDIA_V10_CSV: &str = "application/vnd.retailer.v10+csv";
/// `UpdateOfferStockRequest.amount` maximum (`specs/bol/retailer-v10.json`).
pub const MAX_STOCK_AMOUNT: i64 = 999;
/// Orders per page of `GET /retailer/orders` (`specs/bol/retailer-v10.json`).
const ORDERS_PAGE_SIZE: usize = 50;
/// Guard against a server whose pages never end.
const MAX_ORDER_PAGES: u32 = 200;
/// `change-interval-minute` maximum (`specs/bol/retailer-v10.json`).
const MAX_CHANGE_INTERVAL_MINUTES: i64 = 60;
/// `latest-change-date` reaches back 3 months at most
/// (`specs/bol/retailer-v10.json`).
const MAX_LOOKBACK_DAYS: i64 = 92;
/// Tries of one read inside an order poll: a poll makes dozens of requests
/// at peak, and one 5xx among them should not throw the rest away.
const POLL_READ_TRIES: u32 = 3;
/// Before a read inside a poll is tried again after a 5xx or network error
/// (doubled each time).
const POLL_READ_BACKOFF: Duration = Duration::from_secs(1);
/// `expires_in` when the token answer lacks it: 299 s, as reported by
/// third parties; bol's own page does not state the lifetime (UNCONFIRMED,
/// <https://api.bol.com/retailer/public/Retailer-API/authentication.html>).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(299);
const BODY_EXCERPT: usize = 2048;
const DETAIL_CACHE_MAX: usize = 10_000;
/// Items of a protective push (half a second at 50 PUTs/s).
const FAST_PUSH_ITEMS: usize = 25;
/// Pushes under way at once, each following its process statuses.
const PUSHES_IN_FLIGHT: usize = 8;
/// Tokens of the stock bucket a bulk push leaves for protective updates:
/// both lanes draw on the one published rate, and on equal terms a
/// saturated bulk lane took half of it from decreases that were due.
const BULK_PUT_RESERVE: f64 = 2.0;

/// Which Offers API the stock is pushed and read through
/// (<https://api.bol.com/retailer/public/Retailer-API/v11/functional/offer-api/whats-new-in-this-api.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffersApi {
    /// `PUT …/stock` + process status; available to every retailer.
    #[default]
    V10,
    /// Synchronous `PATCH`; beta with limited availability (UNCONFIRMED GA).
    V11,
}

/// One bol rate-limit bucket: `max_capacity` requests per `time_to_live`
/// (the shape of bol's throttling rules,
/// <https://api.bol.com/retailer/public/Retailer-API/conventions.html>, and
/// of its published limits, <https://api.bol.com/retailer/public/ratelimits>).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub max_capacity: u32,
    pub time_to_live: Duration,
}

impl RateLimit {
    pub const fn per_second(n: u32) -> RateLimit {
        RateLimit {
            max_capacity: n,
            time_to_live: Duration::from_secs(1),
        }
    }

    pub const fn per_minute(n: u32) -> RateLimit {
        RateLimit {
            max_capacity: n,
            time_to_live: Duration::from_secs(60),
        }
    }

    pub const fn per_hour(n: u32) -> RateLimit {
        RateLimit {
            max_capacity: n,
            time_to_live: Duration::from_secs(3600),
        }
    }

    fn limiter(&self) -> Limiter {
        let capacity = f64::from(self.max_capacity.max(1));
        let ttl = self.time_to_live.as_secs_f64().max(1e-3);
        // At exactly the published rate one request in a few thousand
        // reached bol's bucket early (a 429 in the sync bench).
        Limiter::under(capacity, capacity / ttl, PACING_MARGIN)
    }
}

/// The share of a published rate the connector paces at.
const PACING_MARGIN: f64 = 0.96;

/// Per-endpoint limits (<https://api.bol.com/retailer/public/Retailer-API/ratelimits.html>,
/// <https://partnerplatform.bol.com/en/need-help/automate/api-rate-limits/>).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// `PUT /retailer/offers/*/stock`: 50/s (live value).
    pub offer_stock: RateLimit,
    /// `PATCH /retailer/offers/*` (v11): 50/s, as `PUT,DELETE
    /// /retailer/offers/*` (the PATCH figure is UNCONFIRMED).
    pub offer_update: RateLimit,
    /// `GET /retailer/offers/*`: 28/s (older list; UNCONFIRMED today).
    pub offer_get: RateLimit,
    /// `GET /shared/process-status/*`: 100/s (older list; UNCONFIRMED).
    pub process_status: RateLimit,
    /// `POST /shared/process-status` (bulk): 2/s (older list; UNCONFIRMED).
    pub process_status_bulk: RateLimit,
    /// `GET /retailer/orders`: 25/min (older list; UNCONFIRMED).
    pub orders_list: RateLimit,
    /// `GET /retailer/orders/*`: 25/s (older list; UNCONFIRMED).
    pub order_get: RateLimit,
    /// `GET /retailer/returns`: no published figure; the order list's
    /// 25/min is assumed (UNCONFIRMED).
    pub returns_list: RateLimit,
    /// `POST /retailer/offers/export`: 10/h (older list; UNCONFIRMED).
    pub offers_export: RateLimit,
    /// `GET /retailer/offers/export/*`: 10/h (older list; UNCONFIRMED).
    pub export_get: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            offer_stock: RateLimit::per_second(50),
            offer_update: RateLimit::per_second(50),
            offer_get: RateLimit::per_second(28),
            process_status: RateLimit::per_second(100),
            process_status_bulk: RateLimit::per_second(2),
            orders_list: RateLimit::per_minute(25),
            order_get: RateLimit::per_second(25),
            returns_list: RateLimit::per_minute(25),
            offers_export: RateLimit::per_hour(10),
            export_get: RateLimit::per_hour(10),
        }
    }
}

/// Connection settings for one bol.com retailer account.
#[derive(Clone)]
pub struct Config {
    /// API base, without a trailing slash. Default `https://api.bol.com`.
    pub api_url: String,
    /// Login host serving `/token`. Default `https://login.bol.com`.
    pub login_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Default `V10`.
    pub offers_api: OffersApi,
    /// Between two reads of a pending process status. Default 2 s.
    pub process_poll_interval: Duration,
    /// How long `push` follows process statuses before answering `pending`.
    /// Default 60 s.
    pub process_timeout: Duration,
    /// A token is renewed this long before it expires (at most half its
    /// lifetime). Default 30 s.
    pub token_refresh_margin: Duration,
    /// Shortest time between two order polls. Default 60 s, so that the
    /// `change-interval-minute` window (elapsed time + 1 min) stays small.
    pub order_poll_interval: Duration,
    /// Items per `push` call (one request each; bol has no batch stock
    /// endpoint). Default 50, one second of the stock bucket.
    pub max_batch: usize,
    pub rate_limits: RateLimits,
    /// From how many listings a reconciliation reads the offers export
    /// rather than one `GET /retailer/offers/{id}` per listing (`None`:
    /// never). Default 1,000: the export is 3 requests plus polls, but
    /// hour-scale limited and minutes in the making.
    pub export_from: Option<usize>,
    /// How long an offers export may stay PENDING before the read fails.
    /// Default 30 min (bol does not state the processing time).
    pub export_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_url: "https://api.bol.com".to_owned(),
            login_url: "https://login.bol.com".to_owned(),
            client_id: String::new(),
            client_secret: String::new(),
            offers_api: OffersApi::V10,
            process_poll_interval: Duration::from_secs(2),
            process_timeout: Duration::from_secs(60),
            token_refresh_margin: Duration::from_secs(30),
            order_poll_interval: Duration::from_secs(60),
            max_batch: 50,
            rate_limits: RateLimits::default(),
            export_from: Some(1_000),
            export_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_url", &self.api_url)
            .field("login_url", &self.login_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("offers_api", &self.offers_api)
            .field("process_poll_interval", &self.process_poll_interval)
            .field("process_timeout", &self.process_timeout)
            .field("token_refresh_margin", &self.token_refresh_margin)
            .field("order_poll_interval", &self.order_poll_interval)
            .field("max_batch", &self.max_batch)
            .field("rate_limits", &self.rate_limits)
            .field("export_from", &self.export_from)
            .field("export_timeout", &self.export_timeout)
            .finish()
    }
}

pub use crate::Clock;

struct Token {
    value: String,
    renew_at: Instant,
}

struct Limiters {
    offer_stock: Limiter,
    offer_update: Limiter,
    offer_get: Limiter,
    process_status: Limiter,
    process_status_bulk: Limiter,
    orders_list: Limiter,
    order_get: Limiter,
    returns_list: Limiter,
    offers_export: Limiter,
    export_get: Limiter,
}

/// What an order's detail says about one order item.
#[derive(Debug, Clone, Default)]
struct OfferRef {
    offer_id: Option<String>,
    reference: Option<String>,
    ean: Option<String>,
}

/// The bol.com connector.
pub struct Bol {
    config: Config,
    transport: Arc<dyn Transport>,
    clock: Clock,
    token: tokio::sync::Mutex<Option<Token>>,
    limits: Limiters,
    /// orderItemId → offer, from order details (they do not change).
    details: Mutex<HashMap<String, OfferRef>>,
}

impl std::fmt::Debug for Bol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bol")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    V10,
    V11,
    /// The offers export file (Accept only).
    V10Csv,
}

impl Media {
    fn as_str(self) -> &'static str {
        match self {
            Media::V10 => MEDIA_V10,
            Media::V11 => MEDIA_V11,
            Media::V10Csv => MEDIA_V10_CSV,
        }
    }
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    OfferStock,
    OfferUpdate,
    OfferGet,
    ProcessStatus,
    ProcessStatusBulk,
    OrdersList,
    OrderGet,
    ReturnsList,
    OffersExport,
    ExportGet,
}

/// A push item on its way through the v10 process.
struct InFlight {
    index: usize,
    offer_id: String,
    amount: i64,
    url: String,
}

/// One order-list query.
#[derive(Debug, Clone)]
enum Window {
    /// Every open order (first poll, or after a long gap).
    Open,
    /// `status=ALL` items changed in the last N minutes.
    Minutes(i64),
    /// `status=ALL` items changed on this date (YYYY-MM-DD; UNCONFIRMED
    /// format and meaning of `latest-change-date`).
    Date(String),
}

impl Bol {
    pub fn new(config: Config, transport: Arc<dyn Transport>) -> Bol {
        Bol::with_clock(config, transport, Arc::new(Utc::now))
    }

    /// As [`Bol::new`], with the wall clock that order-poll windows use.
    pub fn with_clock(config: Config, transport: Arc<dyn Transport>, clock: Clock) -> Bol {
        let r = &config.rate_limits;
        let limits = Limiters {
            offer_stock: r.offer_stock.limiter(),
            offer_update: r.offer_update.limiter(),
            offer_get: r.offer_get.limiter(),
            process_status: r.process_status.limiter(),
            process_status_bulk: r.process_status_bulk.limiter(),
            orders_list: r.orders_list.limiter(),
            order_get: r.order_get.limiter(),
            offers_export: r.offers_export.limiter(),
            export_get: r.export_get.limiter(),
            returns_list: r.returns_list.limiter(),
        };
        Bol {
            config,
            transport,
            clock,
            token: tokio::sync::Mutex::new(None),
            limits,
            details: Mutex::new(HashMap::new()),
        }
    }

    fn limiter(&self, endpoint: Endpoint) -> &Limiter {
        match endpoint {
            Endpoint::OfferStock => &self.limits.offer_stock,
            Endpoint::OfferUpdate => &self.limits.offer_update,
            Endpoint::OfferGet => &self.limits.offer_get,
            Endpoint::ProcessStatus => &self.limits.process_status,
            Endpoint::ProcessStatusBulk => &self.limits.process_status_bulk,
            Endpoint::OrdersList => &self.limits.orders_list,
            Endpoint::OrderGet => &self.limits.order_get,
            Endpoint::ReturnsList => &self.limits.returns_list,
            Endpoint::OffersExport => &self.limits.offers_export,
            Endpoint::ExportGet => &self.limits.export_get,
        }
    }

    fn api(&self) -> &str {
        self.config.api_url.trim_end_matches('/')
    }

    // -----------------------------------------------------------------------
    // Auth (<https://api.bol.com/retailer/public/Retailer-API/authentication.html>).

    /// The cached token, or a new one when it is missing or about to
    /// expire. `stale` is a token the API refused: it is dropped if it is
    /// still the cached one.
    async fn token(&self, stale: Option<&str>) -> Result<String, ChannelError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            let refused = stale.is_some_and(|s| s == token.value);
            if !refused && Instant::now() < token.renew_at {
                return Ok(token.value.clone());
            }
        }
        *cached = None;
        let (value, lifetime) = self.request_token().await?;
        let margin = self.config.token_refresh_margin.min(lifetime / 2);
        *cached = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(value)
    }

    async fn request_token(&self) -> Result<(String, Duration), ChannelError> {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.config.client_id, self.config.client_secret
        ));
        let mut headers = http::HeaderMap::new();
        let auth = http::HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
            ChannelError::new(
                ErrorClass::Permanent,
                "bad_credentials",
                "client id/secret cannot be sent in a header",
            )
        })?;
        headers.insert(http::header::AUTHORIZATION, auth);
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let request = HttpRequest {
            method: http::Method::POST,
            url: format!("{}/token", self.config.login_url.trim_end_matches('/')),
            headers,
            body: b"grant_type=client_credentials".to_vec(),
        };
        let response = self.transport.send(request).await?;
        if !(200..300).contains(&response.status) {
            let mut error = classify(&response, "token request");
            if matches!(response.status, 400 | 401 | 403) {
                error.code = "auth_failed".to_owned();
            }
            return Err(error);
        }
        let value = json_of(&response, "token request")?;
        let token = value
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ChannelError::new(
                    ErrorClass::Retryable,
                    "bad_response",
                    "token answer without access_token",
                )
            })?;
        if let Some(kind) = value.get("token_type").and_then(Value::as_str) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(ChannelError::new(
                    ErrorClass::Permanent,
                    "auth_failed",
                    format!("unexpected token_type {kind}"),
                ));
            }
        }
        let lifetime = int_value(value.get("expires_in"))
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok((token.to_owned(), lifetime))
    }

    // -----------------------------------------------------------------------
    // Requests.

    /// Sends one API request after the endpoint's bucket allows it. Returns
    /// the response when it is 2xx, the classified error otherwise. A 429
    /// blocks the bucket for `Retry-After`; a 401 renews the token once.
    async fn call(
        &self,
        endpoint: Endpoint,
        method: http::Method,
        url: &str,
        media: Media,
        body: Option<&Value>,
        what: &str,
    ) -> Result<HttpResponse, ChannelError> {
        self.call_leaving(endpoint, 0.0, method, url, media, body, what)
            .await
    }

    /// `call`, paced to leave `reserve` tokens of the endpoint's bucket for
    /// more urgent calls (`Limiter::acquire_leaving`).
    #[allow(clippy::too_many_arguments)]
    async fn call_leaving(
        &self,
        endpoint: Endpoint,
        reserve: f64,
        method: http::Method,
        url: &str,
        media: Media,
        body: Option<&Value>,
        what: &str,
    ) -> Result<HttpResponse, ChannelError> {
        let limiter = self.limiter(endpoint);
        let mut refused: Option<String> = None;
        for attempt in 0..2 {
            let token = self.token(refused.as_deref()).await?;
            limiter.acquire_leaving(1.0, reserve).await;
            let mut headers = http::HeaderMap::new();
            let bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ChannelError::new(
                    ErrorClass::Retryable,
                    "bad_token",
                    "token cannot be sent in a header",
                )
            })?;
            headers.insert(http::header::AUTHORIZATION, bearer);
            headers.insert(
                http::header::ACCEPT,
                http::HeaderValue::from_static(media.as_str()),
            );
            let body_bytes = match body {
                Some(value) => {
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(media.as_str()),
                    );
                    value.to_string().into_bytes()
                }
                None => Vec::new(),
            };
            let request = HttpRequest {
                method: method.clone(),
                url: url.to_owned(),
                headers,
                body: body_bytes,
            };
            let response = self.transport.send(request).await?;
            self.observe_limits(limiter, &response);
            match response.status {
                200..=299 => return Ok(response),
                401 if attempt == 0 => {
                    refused = Some(token);
                    continue;
                }
                429 => {
                    let error = classify(&response, what);
                    limiter.block_for(error.retry_after.unwrap_or(Duration::from_secs(1)));
                    return Err(error);
                }
                _ => return Err(classify(&response, what)),
            }
        }
        Err(ChannelError::new(
            ErrorClass::Permanent,
            "unauthorized",
            format!("{what}: token refused twice"),
        ))
    }

    /// An idempotent GET inside an order poll, tried again after a 5xx or
    /// network failure. A 429 ends the poll instead: the poller waits its
    /// `Retry-After` and the next poll reads the rest.
    async fn read(
        &self,
        endpoint: Endpoint,
        url: &str,
        what: &str,
    ) -> Result<HttpResponse, ChannelError> {
        let mut backoff = POLL_READ_BACKOFF;
        let mut tries = 1;
        loop {
            match self
                .call(endpoint, http::Method::GET, url, Media::V10, None, what)
                .await
            {
                Ok(response) => return Ok(response),
                Err(error) if tries < POLL_READ_TRIES && error.class == ErrorClass::Retryable => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    tries += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Lowers the bucket to what bol reports. Header names are UNCONFIRMED
    /// for the Retailer API (its page does not name them,
    /// <https://api.bol.com/retailer/public/Retailer-API/ratelimits.html>);
    /// absent headers change nothing.
    fn observe_limits(&self, limiter: &Limiter, response: &HttpResponse) {
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        if let Some(remaining) = header("x-ratelimit-remaining") {
            limiter.observe(0.0, 0.0, remaining);
        }
    }

    // -----------------------------------------------------------------------
    // Push.

    fn offer_url(&self, offer_id: &str) -> String {
        format!("{}/retailer/offers/{}", self.api(), path_segment(offer_id))
    }

    /// v11: one synchronous PATCH (`specs/bol/offers-v11.yaml`).
    async fn patch_v11(&self, offer_id: &str, amount: i64, reserve: f64) -> ItemOutcome {
        let body = json!({"stock": {"amount": amount, "managedByRetailer": true}});
        let url = self.offer_url(offer_id);
        match self
            .call_leaving(
                Endpoint::OfferUpdate,
                reserve,
                http::Method::PATCH,
                &url,
                Media::V11,
                Some(&body),
                &format!("update offer {offer_id}"),
            )
            .await
        {
            Ok(_) => ItemOutcome::Applied { quantity: amount },
            Err(error) => ItemOutcome::Failed(error),
        }
    }

    /// v10: the stock PUT. `Ok(Err(outcome))` when it is already decided.
    async fn put_v10(
        &self,
        index: usize,
        offer_id: &str,
        amount: i64,
        reserve: f64,
    ) -> Result<Result<InFlight, ItemOutcome>, ChannelError> {
        let status = self.put_stock(offer_id, amount, reserve).await?;
        Ok(self.follow_up(index, offer_id, amount, &status))
    }

    /// The v10 stock PUT; its answer is a `ProcessStatus`. `reserve`: tokens
    /// left for protective updates (`BULK_PUT_RESERVE` on the bulk lane).
    async fn put_stock(
        &self,
        offer_id: &str,
        amount: i64,
        reserve: f64,
    ) -> Result<Value, ChannelError> {
        let body = json!({"amount": amount, "managedByRetailer": true});
        let url = format!("{}/stock", self.offer_url(offer_id));
        let response = self
            .call_leaving(
                Endpoint::OfferStock,
                reserve,
                http::Method::PUT,
                &url,
                Media::V10,
                Some(&body),
                &format!("update stock of offer {offer_id}"),
            )
            .await?;
        json_of(&response, "stock update")
    }

    fn follow_up(
        &self,
        index: usize,
        offer_id: &str,
        amount: i64,
        status: &Value,
    ) -> Result<InFlight, ItemOutcome> {
        match process_state(status) {
            Process::Success => Err(ItemOutcome::Applied { quantity: amount }),
            Process::Failure(message) => Err(ItemOutcome::Failed(process_error(
                ErrorClass::Permanent,
                "process_failure",
                format!("stock update of offer {offer_id} failed: {message}"),
                status,
            ))),
            Process::Timeout => Err(ItemOutcome::Failed(process_error(
                ErrorClass::Retryable,
                "process_timeout",
                format!("stock update of offer {offer_id} timed out at bol"),
                status,
            ))),
            Process::Pending => match process_url(self.api(), status) {
                Some(url) => Ok(InFlight {
                    index,
                    offer_id: offer_id.to_owned(),
                    amount,
                    url,
                }),
                None => Err(ItemOutcome::Failed(process_error(
                    ErrorClass::Retryable,
                    "no_process_status",
                    format!("stock update of offer {offer_id}: answer names no process status"),
                    status,
                ))),
            },
        }
    }

    /// Reads one process status once: `None` while it is still pending.
    async fn check_process(&self, flight: &InFlight) -> Option<ItemOutcome> {
        let result = self
            .call(
                Endpoint::ProcessStatus,
                http::Method::GET,
                &flight.url,
                Media::V10,
                None,
                "process status",
            )
            .await;
        match result {
            Ok(response) => match json_of(&response, "process status") {
                Ok(status) => self
                    .follow_up(flight.index, &flight.offer_id, flight.amount, &status)
                    .err(),
                Err(_) => None,
            },
            // Expired (statuses are kept "for a limited period",
            // `specs/bol/shared-v10.json`): read the offer back to decide.
            Err(error) if error.status == Some(404) => Some(self.read_back(flight).await),
            Err(error) if error.class == ErrorClass::Permanent => Some(ItemOutcome::Failed(error)),
            // 429 (bucket now blocked), 5xx, network: ask again next round.
            Err(_) => None,
        }
    }

    async fn read_back(&self, flight: &InFlight) -> ItemOutcome {
        match self.read_offer(&flight.offer_id).await {
            Ok(level) if level.quantity == Some(flight.amount) => ItemOutcome::Applied {
                quantity: flight.amount,
            },
            Ok(level) => {
                let mut error = ChannelError::new(
                    ErrorClass::Retryable,
                    "process_status_expired",
                    format!(
                        "process status of offer {} expired; bol holds {:?}, sent {}",
                        flight.offer_id, level.quantity, flight.amount
                    ),
                );
                error.current = level.quantity;
                ItemOutcome::Failed(error)
            }
            Err(error) => ItemOutcome::Failed(error),
        }
    }

    async fn push_v10(
        &self,
        items: &[PushItem],
        outcomes: &mut [Option<ItemOutcome>],
        reserve: f64,
    ) {
        let mut flights: Vec<InFlight> = Vec::new();
        let mut halted: Option<ChannelError> = None;
        for (index, item) in items.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            if let Some(error) = &halted {
                outcomes[index] = Some(ItemOutcome::Failed(error.clone()));
                continue;
            }
            let offer_id = match offer_id_of(&item.external) {
                Ok(id) => id,
                Err(error) => {
                    outcomes[index] = Some(ItemOutcome::Failed(error));
                    continue;
                }
            };
            match self
                .put_v10(index, &offer_id, stock_amount(item.quantity), reserve)
                .await
            {
                Ok(Ok(flight)) => flights.push(flight),
                Ok(Err(outcome)) => outcomes[index] = Some(outcome),
                Err(error) => {
                    // The rest would meet the same block or refused token.
                    if error.class == ErrorClass::RateLimited
                        || error.code == "unauthorized"
                        || error.code == "auth_failed"
                    {
                        halted = Some(error.clone());
                    }
                    outcomes[index] = Some(ItemOutcome::Failed(error));
                }
            }
        }

        // Follow every pending process together, one read each per round.
        let deadline = Instant::now() + self.config.process_timeout;
        while !flights.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = self.config.process_poll_interval.min(deadline - now);
            tokio::time::sleep(wait).await;
            let mut still = Vec::with_capacity(flights.len());
            for flight in flights {
                match self.check_process(&flight).await {
                    Some(outcome) => outcomes[flight.index] = Some(outcome),
                    None => still.push(flight),
                }
            }
            flights = still;
        }
        for flight in flights {
            let mut error = ChannelError::new(
                ErrorClass::Retryable,
                "pending",
                format!(
                    "stock update of offer {} still pending after {:?}",
                    flight.offer_id, self.config.process_timeout
                ),
            );
            error.retry_after = Some(self.config.process_poll_interval);
            outcomes[flight.index] = Some(ItemOutcome::Failed(error));
        }
    }

    /// `push` with `reserve` tokens of the stock bucket left for more
    /// urgent pushes.
    async fn push_leaving(
        &self,
        items: &[PushItem],
        reserve: f64,
    ) -> Result<Vec<ItemOutcome>, ChannelError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        match self.config.offers_api {
            OffersApi::V10 => self.push_v10(items, &mut outcomes, reserve).await,
            OffersApi::V11 => self.push_v11(items, &mut outcomes, reserve).await,
        }
        let outcomes = crate::or_not_sent(outcomes);
        // A token that cannot be had fails the whole call.
        if let Some(ItemOutcome::Failed(first)) = outcomes.first() {
            if first.code == "auth_failed"
                && outcomes
                    .iter()
                    .all(|o| matches!(o, ItemOutcome::Failed(e) if e == first))
            {
                return Err(first.clone());
            }
        }
        Ok(outcomes)
    }

    async fn push_v11(
        &self,
        items: &[PushItem],
        outcomes: &mut [Option<ItemOutcome>],
        reserve: f64,
    ) {
        let mut halted: Option<ChannelError> = None;
        for (index, item) in items.iter().enumerate() {
            if let Some(error) = &halted {
                outcomes[index] = Some(ItemOutcome::Failed(error.clone()));
                continue;
            }
            let outcome = match offer_id_of(&item.external) {
                Ok(offer_id) => {
                    self.patch_v11(&offer_id, stock_amount(item.quantity), reserve)
                        .await
                }
                Err(error) => ItemOutcome::Failed(error),
            };
            if let ItemOutcome::Failed(error) = &outcome {
                if error.class == ErrorClass::RateLimited || error.code == "unauthorized" {
                    halted = Some(error.clone());
                }
            }
            outcomes[index] = Some(outcome);
        }
    }

    // -----------------------------------------------------------------------
    // Reads.

    async fn read_offer(&self, offer_id: &str) -> Result<ChannelLevel, ChannelError> {
        let media = match self.config.offers_api {
            OffersApi::V10 => Media::V10,
            OffersApi::V11 => Media::V11,
        };
        let response = self
            .call(
                Endpoint::OfferGet,
                http::Method::GET,
                &self.offer_url(offer_id),
                media,
                None,
                &format!("offer {offer_id}"),
            )
            .await?;
        let offer = json_of(&response, "offer")?;
        let quantity = int_value(offer.get("stock").and_then(|s| s.get("amount")));
        Ok(ChannelLevel {
            quantity,
            availability: None,
        })
    }

    // -----------------------------------------------------------------------
    // Orders (`GET /retailer/orders`, `specs/bol/retailer-v10.json`).

    fn windows(&self, cursor: Option<&str>, now: DateTime<Utc>) -> Vec<Window> {
        let since = cursor.and_then(|c| DateTime::parse_from_rfc3339(c.trim()).ok());
        let Some(since) = since.map(|s| s.with_timezone(&Utc)) else {
            // First poll: every open order, plus the last hour's changes
            // for cancellations of orders that are no longer open.
            return vec![Window::Open, Window::Minutes(MAX_CHANGE_INTERVAL_MINUTES)];
        };
        let elapsed = (now - since).num_seconds().max(0);
        // Whole minutes since the last poll began, plus one for clock skew
        // and requests in flight (the spec asks to poll at least a minute
        // more often than the interval, `change-interval-minute` in
        // `specs/bol/retailer-v10.json`).
        let minutes = (elapsed + 59) / 60 + 1;
        if minutes <= MAX_CHANGE_INTERVAL_MINUTES {
            return vec![Window::Minutes(minutes.max(2))];
        }
        // A gap longer than the interval allows: every open order, plus
        // each day since the last poll for items that left OPEN.
        let mut windows = vec![Window::Open];
        let today = now.date_naive();
        let first = since
            .date_naive()
            .max(today - ChronoDuration::days(MAX_LOOKBACK_DAYS));
        let mut day = first;
        while day <= today {
            windows.push(Window::Date(day.format("%Y-%m-%d").to_string()));
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        windows
    }

    /// Appends the window's orders page by page to `orders`: what was read
    /// before a failed page stays there.
    async fn list_orders(
        &self,
        window: &Window,
        orders: &mut Vec<Value>,
    ) -> Result<(), ChannelError> {
        for page in 1..=MAX_ORDER_PAGES {
            let filter = match window {
                Window::Open => "status=OPEN".to_owned(),
                Window::Minutes(m) => format!("status=ALL&change-interval-minute={m}"),
                Window::Date(d) => format!("status=ALL&latest-change-date={d}"),
            };
            let url = format!(
                "{}/retailer/orders?page={page}&fulfilment-method=FBR&{filter}",
                self.api()
            );
            let response = self.read(Endpoint::OrdersList, &url, "order list").await?;
            // An empty page may be `{}` (UNCONFIRMED; `ReducedOrders` in
            // `specs/bol/retailer-v10.json` marks `orders` required).
            let value = if response.body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                json_of(&response, "order list")?
            };
            let page_orders = value
                .get("orders")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let items: usize = page_orders
                .iter()
                .map(|o| {
                    o.get("orderItems")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                })
                .sum();
            let full = page_orders.len() >= ORDERS_PAGE_SIZE || items >= ORDERS_PAGE_SIZE;
            orders.extend(page_orders);
            // Whether the 50 counts orders or items is unclear: a page full
            // by either count is followed by another.
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Offer references of an order's items, from its detail.
    async fn order_detail(&self, order_id: &str) -> Result<(), ChannelError> {
        let url = format!("{}/retailer/orders/{}", self.api(), path_segment(order_id));
        let response = match self
            .read(Endpoint::OrderGet, &url, &format!("order {order_id}"))
            .await
        {
            Ok(response) => response,
            // Gone: map by EAN only.
            Err(error) if error.status == Some(404) => return Ok(()),
            Err(error) => return Err(error),
        };
        let detail = json_of(&response, "order detail")?;
        let mut cache = match self.details.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.len() > DETAIL_CACHE_MAX {
            cache.clear();
        }
        for item in detail
            .get("orderItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(item_id) = string_value(item.get("orderItemId")) else {
                continue;
            };
            let offer = item.get("offer");
            cache.insert(
                item_id,
                OfferRef {
                    offer_id: string_value(offer.and_then(|o| o.get("offerId"))),
                    reference: string_value(offer.and_then(|o| o.get("reference"))),
                    ean: string_value(item.get("product").and_then(|p| p.get("ean"))),
                },
            );
        }
        Ok(())
    }

    fn cached_offer(&self, item_id: &str) -> Option<OfferRef> {
        let cache = match self.details.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.get(item_id).cloned()
    }
}

/// What one listed order item asks of stockd.
struct ItemState {
    item_id: String,
    ean: Option<String>,
    quantity: i64,
    /// Place the item (it holds or held stock).
    placed: bool,
    /// Units to release, when cancelled or cancellation requested.
    cancelled: i64,
}

fn item_state(item: &Value) -> Option<ItemState> {
    let item_id = string_value(item.get("orderItemId"))?;
    if let Some(method) = item.get("fulfilmentMethod").and_then(Value::as_str) {
        if !method.eq_ignore_ascii_case("FBR") {
            return None;
        }
    }
    let quantity = int_value(item.get("quantity")).unwrap_or(0);
    if quantity <= 0 {
        return None;
    }
    let shipped = int_value(item.get("quantityShipped")).unwrap_or(0).max(0);
    let cancelled_qty = int_value(item.get("quantityCancelled")).unwrap_or(0).max(0);
    let requested = item
        .get("cancellationRequest")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let open = item
        .get("fulfilmentStatus")
        .and_then(Value::as_str)
        .is_none_or(|s| s.eq_ignore_ascii_case("OPEN"));
    // bol cancels whole order items (`PUT /retailer/orders/cancellation` in
    // `specs/bol/retailer-v10.json` names no quantity), so a customer's
    // request covers everything not shipped.
    let cancelled = if cancelled_qty > 0 {
        cancelled_qty.min(quantity)
    } else if requested {
        (quantity - shipped).max(0)
    } else {
        0
    };
    // A handled item that only shipped needs nothing: stockd learns about
    // shipping from its own warehouse events.
    let placed = open || cancelled > 0;
    if !placed {
        return None;
    }
    Some(ItemState {
        item_id,
        ean: string_value(item.get("ean")),
        quantity,
        placed,
        cancelled,
    })
}

#[async_trait]
impl Connector for Bol {
    fn kind(&self) -> &'static str {
        "bol"
    }

    fn max_batch(&self) -> usize {
        self.config.max_batch.max(1)
    }

    /// Half a second of stock PUTs at the published 50/s.
    fn fast_batch(&self) -> usize {
        FAST_PUSH_ITEMS.min(self.max_batch())
    }

    /// A push waits for bol's process statuses; the next ones are sent
    /// meanwhile.
    fn pushes_in_flight(&self) -> usize {
        PUSHES_IN_FLIGHT
    }

    /// v10 stock updates end in a process status, which a tracker follows
    /// in bulk (`bol/tracking.rs`); v11 answers at once.
    fn tracks_acknowledgements(&self) -> bool {
        self.config.offers_api == OffersApi::V10
    }

    fn track_interval(&self) -> std::time::Duration {
        self.config.process_poll_interval
    }

    fn track_timeout(&self) -> std::time::Duration {
        self.config.process_timeout
    }

    async fn submit(
        &self,
        items: &[PushItem],
        bulk: bool,
    ) -> Result<Vec<crate::Submitted>, ChannelError> {
        let reserve = if bulk { BULK_PUT_RESERVE } else { 0.0 };
        if self.config.offers_api != OffersApi::V10 {
            let outcomes = self.push_leaving(items, reserve).await?;
            return Ok(outcomes.into_iter().map(crate::Submitted::Done).collect());
        }
        let out = self.submit_v10(items, reserve).await;
        // A token that cannot be had fails the whole call.
        if let Some(crate::Submitted::Done(ItemOutcome::Failed(first))) = out.first() {
            if first.code == "auth_failed"
                && out.iter().all(
                    |o| matches!(o, crate::Submitted::Done(ItemOutcome::Failed(e)) if e == first),
                )
            {
                return Err(first.clone());
            }
        }
        Ok(out)
    }

    async fn track(
        &self,
        items: &[crate::TrackedItem],
    ) -> Result<Vec<Option<ItemOutcome>>, ChannelError> {
        self.track_processes(items).await
    }

    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        self.push_leaving(items, 0.0).await
    }

    /// The same requests as `push`, leaving protective updates their share
    /// of the stock bucket.
    async fn push_bulk(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        self.push_leaving(items, BULK_PUT_RESERVE).await
    }

    fn bulk_read_from(&self) -> Option<usize> {
        self.config.export_from
    }

    fn listing_key(&self, external: &External) -> Option<String> {
        offer_id_of(external).ok()
    }

    /// The v10 offers export (see `bol/export.rs`).
    async fn read_all(&self, progress: BulkProgress<'_>) -> Result<BulkRead, ChannelError> {
        self.export_offers(progress).await
    }

    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut results = Vec::with_capacity(listings.len());
        let mut halted: Option<ChannelError> = None;
        for listing in listings {
            if let Some(error) = &halted {
                results.push(Err(error.clone()));
                continue;
            }
            let result = match offer_id_of(&listing.external) {
                Ok(offer_id) => self.read_offer(&offer_id).await,
                Err(error) => Err(error),
            };
            if let Err(error) = &result {
                if error.class == ErrorClass::RateLimited
                    || error.code == "unauthorized"
                    || error.code == "auth_failed"
                {
                    halted = Some(error.clone());
                }
            }
            results.push(result);
        }
        if let Some(error) = &halted {
            if error.code == "auth_failed" {
                return Err(error.clone());
            }
        }
        Ok(results)
    }

    /// With `managedByRetailer` bol subtracts only the orders placed after
    /// the last stock update it applied: an order placed before it (even
    /// one stockd had not heard of) and its cancellation leave the offer's
    /// count where that update put it.
    fn count_follows_orders(&self) -> bool {
        false
    }

    fn polls_orders(&self) -> bool {
        true
    }

    /// Windows: the first poll (`cursor` `None`) lists every OPEN order
    /// plus the last 60 minutes of changes (`status=ALL`), so recent
    /// cancellations are seen. Later polls list `status=ALL` with
    /// `change-interval-minute` = minutes since the previous poll began
    /// + 1. After a gap beyond 60 minutes: every OPEN order plus
    /// `latest-change-date` for each day since (UNCONFIRMED: read as
    /// "changed on that date", sent as YYYY-MM-DD). The cursor is the
    /// RFC 3339 instant at which the poll began.
    ///
    /// Each item that is open (or cancelled) yields `Placed` with key
    /// `order-item:{orderItemId}:placed`; a cancelled item or a customer's
    /// cancellation request also yields `Cancelled` with key
    /// `order-item:{orderItemId}:cancelled` (after its `Placed`, so a
    /// cancellation never names an order stockd has not seen). Then every
    /// unhandled FBR return item yields `Restocked` with key
    /// `return:{rmaId}` (`bol/returns.rs`).
    async fn poll_orders(&self, cursor: Option<&str>) -> Result<OrderPoll, ChannelError> {
        let started = (self.clock)();
        let windows = self.windows(cursor, started);
        // A failed request ends the poll's reads but not its work: what was
        // read before it is reported (changes are idempotent by dedup key),
        // and the cursor stays where it was so the next poll reads the rest.
        let mut failure: Option<ChannelError> = None;
        let mut listed = Vec::new();
        for window in &windows {
            if let Err(error) = self.list_orders(window, &mut listed).await {
                failure = Some(error);
                break;
            }
        }
        let mut seen_orders: Vec<(String, Vec<ItemState>)> = Vec::new();
        let mut seen_items: HashSet<String> = HashSet::new();
        for order in listed {
            let Some(order_id) = string_value(order.get("orderId")) else {
                continue;
            };
            let states: Vec<ItemState> = order
                .get("orderItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(item_state)
                .filter(|s| seen_items.insert(s.item_id.clone()))
                .collect();
            if !states.is_empty() {
                seen_orders.push((order_id, states));
            }
        }

        let mut changes = Vec::new();
        for (order_id, states) in seen_orders {
            if states
                .iter()
                .any(|s| self.cached_offer(&s.item_id).is_none())
            {
                if failure.is_some() {
                    // Its offer is unknown and bol is failing: next poll.
                    continue;
                }
                if let Err(error) = self.order_detail(&order_id).await {
                    failure = Some(error);
                    continue;
                }
            }
            for state in states {
                let offer = self.cached_offer(&state.item_id).unwrap_or_default();
                let mut keys = Vec::new();
                if let Some(id) = offer.offer_id {
                    keys.push(("offer_id".to_owned(), id));
                }
                if let Some(ean) = state.ean.or(offer.ean) {
                    keys.push(("ean".to_owned(), ean));
                }
                if let Some(reference) = offer.reference {
                    keys.push(("sku".to_owned(), reference));
                }
                if keys.is_empty() {
                    continue;
                }
                let line = |qty| OrderLineRef {
                    line_id: state.item_id.clone(),
                    keys: keys.clone(),
                    qty,
                };
                if state.placed {
                    changes.push(OrderChange {
                        dedup_key: format!("order-item:{}:placed", state.item_id),
                        order_id: order_id.clone(),
                        kind: OrderChangeKind::Placed,
                        lines: vec![line(state.quantity)],
                    });
                }
                if state.cancelled > 0 {
                    changes.push(OrderChange {
                        dedup_key: format!("order-item:{}:cancelled", state.item_id),
                        order_id: order_id.clone(),
                        kind: OrderChangeKind::Cancelled,
                        lines: vec![line(state.cancelled)],
                    });
                }
            }
        }

        if let Some(error) = failure {
            if changes.is_empty() {
                return Err(error);
            }
            tracing::warn!(code = %error.code, error = %error.message, read = changes.len(),
                "bol order poll cut short; what was read is applied, the rest next poll");
            return Ok(OrderPoll {
                changes,
                cursor: cursor.map(str::to_owned),
                next_poll_after: error.retry_after.unwrap_or(self.config.order_poll_interval),
            });
        }

        // Returns after orders, so a return names an order line stockd has
        // seen placed. A failed return list does not hold the orders back:
        // an unhandled return is listed again on the next poll.
        match self.poll_returns().await {
            Ok(returned) => changes.extend(returned),
            Err(error) => {
                tracing::warn!(code = %error.code, error = %error.message,
                    "bol return list failed; returns wait for the next poll");
            }
        }

        // Next poll: the configured interval, later if the list bucket
        // needs longer to hand out a request.
        let limit = self.config.rate_limits.orders_list;
        let refill = f64::from(limit.max_capacity.max(1)) / limit.time_to_live.as_secs_f64();
        let missing = (1.0 - self.limits.orders_list.available()).max(0.0);
        let bucket_wait = Duration::from_secs_f64(missing / refill.max(1e-9));
        Ok(OrderPoll {
            changes,
            cursor: Some(started.to_rfc3339_opts(SecondsFormat::Secs, true)),
            next_poll_after: self.config.order_poll_interval.max(bucket_wait),
        })
    }

    fn webhook(
        &self,
        _headers: &http::HeaderMap,
        _body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        // Push payload and signature format are UNCONFIRMED (neither is in
        // `specs/bol/retailer-v10.json`); stockd polls bol instead of
        // trusting an unverifiable delivery.
        Err(WebhookError::BadSignature)
    }
}
