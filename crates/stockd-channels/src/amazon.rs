//! Amazon Selling Partner API connector.
//!
//! Each behaviour cites the Selling Partner API documentation it follows.
//!
//! - Auth: Login with Amazon refresh-token exchange; the access token is
//!   cached until shortly before it expires and sent as `x-amz-access-token`
//!   on every SP-API call (<https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api>). A 401/403 renews the token once.
//! - Push, small batches: Listings Items 2021-08-01 `patchListingsItem`, one
//!   `merge` of `/attributes/fulfillment_availability` per SKU (<https://developer-docs.amazon.com/sp-api/docs/listings-items-api-v2021-08-01-reference>).
//!   `ACCEPTED` is reported as applied: the channel queued the absolute value
//!   and applies it asynchronously (verification is by read-back).
//! - Push, large batches (more than `Config::feed_threshold` items):
//!   `JSON_LISTINGS_FEED` through the Feeds API 2021-06-30 (<https://developer-docs.amazon.com/sp-api/docs/feeds-api-v2021-06-30-use-case-guide>), followed
//!   to its processing report within `Config::feed_timeout`. A feed still
//!   processing at that bound is remembered: its items come back `Retryable`
//!   with code `pending`, and when the dispatcher retries them (same
//!   idempotency key) the remembered feed is checked instead of sending a
//!   new one. A `FATAL` or `CANCELLED` feed is `Retryable` (Amazon says some,
//!   none or all of it may have applied; the values are absolute, so sending
//!   them again is safe). The dispatcher's bulk lane instead `submit`s a
//!   feed and hands back `{feedId}#{messageId}` per item; its tracker asks
//!   `getFeed` and reads the processing report (`track`), so a feed in
//!   flight survives a restart of stockd.
//! - Reads: `getListingsItem` with `includedData=fulfillmentAvailability`,
//!   the quantity of the `DEFAULT` (merchant-fulfilled) channel.
//! - Bulk read ([`Connector::read_all`]): a `GET_MERCHANT_LISTINGS_ALL_DATA`
//!   report through the Reports API 2021-06-30, followed to its (optionally
//!   GZIP) tab-separated document (<https://developer-docs.amazon.com/sp-api/docs/reports-api-v2021-06-30-reference>,
//!   <https://developer-docs.amazon.com/sp-api/docs/retrieve-a-report>); see
//!   the `reports` module. A listing's key is its seller SKU.
//! - Orders: polled with Orders API v2026-01-01 `searchOrders` on
//!   `lastUpdatedAfter` (<https://developer-docs.amazon.com/sp-api/docs/orders-api-migration-guide>), and received as `ORDER_CHANGE` notifications
//!   forwarded to stockd with an `X-Stockd-Signature` HMAC (<https://developer-docs.amazon.com/sp-api/docs/notification-type-values>). Both give
//!   the same dedup key per order and state.
//!
//! Every operation has its own token bucket with the published rate and
//! burst (<https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>), corrected from `x-amzn-RateLimit-Limit`; a 429 empties the
//! bucket for `Retry-After` (UNCONFIRMED on Amazon) or one token's time.

mod auth;
mod feeds;
mod listings;
mod orders;
mod reports;

pub use reports::{parse_listings_report, LISTINGS_REPORT};

use crate::encoding::{encode_pairs, percent_encode};
use crate::ratelimit::Limiter;
use crate::{
    constant_time_eq, Availability, BulkProgress, BulkRead, ChannelError, ChannelLevel, Connector,
    ErrorClass, External, HttpRequest, HttpResponse, ItemOutcome, LevelQuery, OrderChange,
    OrderChangeKind, OrderLineRef, OrderPoll, PushItem, Submitted, TrackedItem, Transport,
    WebhookAction, WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use listings::{quantity_patches, quantity_to_send};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The Netherlands marketplace (the agreed listing external id).
pub const DEFAULT_MARKETPLACE: &str = "A1805IZSGTT6HS";
/// Most messages one `JSON_LISTINGS_FEED` takes (listings-feed-schema-v2).
pub const FEED_MAX_MESSAGES: usize = 25_000;
/// The content type declared for feed documents and used for the upload.
pub const FEED_CONTENT_TYPE: &str = "application/json; charset=UTF-8";
/// The header stockd's own convention puts on forwarded notifications.
/// Share of a published rate the connector uses.
const PACING_MARGIN: f64 = 0.9;
pub const SIGNATURE_HEADER: &str = "x-stockd-signature";

const LISTINGS_PREFIX: &str = "/listings/2021-08-01/items";
const FEEDS_PREFIX: &str = "/feeds/2021-06-30";
const ORDERS_PATH: &str = "/orders/2026-01-01/orders";
const BODY_EXCERPT: usize = 2048;
/// Access tokens live one hour (<https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api>); renew this long before.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Items of a push that takes the patch path (about one second at the
/// `patchListingsItem` rate).
const PATCHES_PER_FAST_PUSH: usize = 5;
/// Tokens of the patch bucket that a patch sent for a bulk push leaves for
/// protective updates: one arriving then is patched at once, not behind
/// the bulk push's patches.
const BULK_PATCH_RESERVE: f64 = 2.0;
/// A remembered pending feed is forgotten after this long.
const PENDING_TTL: Duration = Duration::from_secs(6 * 3600);

type HmacSha256 = Hmac<Sha256>;

/// Connection settings for one seller account in one marketplace.
#[derive(Clone)]
pub struct Config {
    /// SP-API base URL, without a trailing slash.
    pub endpoint: String,
    /// LWA token endpoint (<https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api>).
    pub lwa_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// `Atzr|…` from the seller's authorisation.
    pub refresh_token: String,
    /// Merchant token, the `{sellerId}` of Listings Items and feed headers.
    pub seller_id: String,
    /// Used when a listing's external id names none, for feeds and orders.
    pub marketplace_id: String,
    /// Key of the `X-Stockd-Signature` HMAC on forwarded notifications.
    pub notification_secret: String,
    /// Locale of issue messages (`issueLocale`).
    pub issue_locale: String,
    /// Pushes with more items than this (per marketplace) use a feed.
    pub feed_threshold: usize,
    /// Time between `getFeed` polls.
    pub feed_poll_interval: Duration,
    /// How long `push` follows a feed before answering `pending`.
    pub feed_timeout: Duration,
    /// How far back the first order poll (no cursor) looks.
    pub order_lookback: Duration,
    /// Time between `getReport` polls while a listings report is generated.
    pub report_poll_interval: Duration,
    /// How long `read_all` follows a listings report before giving up.
    pub report_timeout: Duration,
    /// From how many listings reconciliation reads the listings report
    /// rather than `getListingsItem` per listing (5/s).
    pub bulk_read_from: usize,
    /// `searchOrders` pages read per poll at most (burst 20, <https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>).
    pub order_pages_per_poll: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "https://sellingpartnerapi-eu.amazon.com".to_owned(),
            lwa_url: "https://api.amazon.com/auth/o2/token".to_owned(),
            client_id: String::new(),
            client_secret: String::new(),
            refresh_token: String::new(),
            seller_id: String::new(),
            marketplace_id: DEFAULT_MARKETPLACE.to_owned(),
            notification_secret: String::new(),
            issue_locale: "en_US".to_owned(),
            feed_threshold: 200,
            feed_poll_interval: Duration::from_secs(30),
            feed_timeout: Duration::from_secs(15 * 60),
            order_lookback: Duration::from_secs(24 * 3600),
            report_poll_interval: Duration::from_secs(30),
            report_timeout: Duration::from_secs(2 * 3600),
            bulk_read_from: 500,
            order_pages_per_poll: 10,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("lwa_url", &self.lwa_url)
            .field("client_id", &self.client_id)
            .field("seller_id", &self.seller_id)
            .field("marketplace_id", &self.marketplace_id)
            .field("feed_threshold", &self.feed_threshold)
            .finish_non_exhaustive()
    }
}

/// The SP-API operations this connector calls, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    PatchListingsItem,
    GetListingsItem,
    CreateFeedDocument,
    CreateFeed,
    GetFeed,
    GetFeedDocument,
    SearchOrders,
    CreateReport,
    GetReport,
    GetReportDocument,
}

const OPS: usize = 10;

impl Op {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::PatchListingsItem => "patchListingsItem",
            Op::GetListingsItem => "getListingsItem",
            Op::CreateFeedDocument => "createFeedDocument",
            Op::CreateFeed => "createFeed",
            Op::GetFeed => "getFeed",
            Op::GetFeedDocument => "getFeedDocument",
            Op::SearchOrders => "searchOrders",
            Op::CreateReport => "createReport",
            Op::GetReport => "getReport",
            Op::GetReportDocument => "getReportDocument",
        }
    }

    /// `(burst, rate per second)` from the models' usage plans (<https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>).
    /// The limiters run one token under the burst and at `PACING_MARGIN` of
    /// the rate.
    fn plan(self) -> (f64, f64) {
        match self {
            Op::PatchListingsItem => (5.0, 5.0),
            Op::GetListingsItem => (10.0, 5.0),
            Op::CreateFeedDocument => (15.0, 0.5),
            Op::CreateFeed => (15.0, 0.0083),
            Op::GetFeed => (15.0, 2.0),
            Op::GetFeedDocument => (10.0, 0.0222),
            Op::SearchOrders => (20.0, 0.0056),
            Op::CreateReport => (15.0, 0.0167),
            Op::GetReport => (15.0, 2.0),
            Op::GetReportDocument => (15.0, 0.0167),
        }
    }

    const ALL: [Op; OPS] = [
        Op::PatchListingsItem,
        Op::GetListingsItem,
        Op::CreateFeedDocument,
        Op::CreateFeed,
        Op::GetFeed,
        Op::GetFeedDocument,
        Op::SearchOrders,
        Op::CreateReport,
        Op::GetReport,
        Op::GetReportDocument,
    ];
}

#[derive(Debug, Clone)]
struct AccessToken {
    value: String,
    expires_at: Instant,
}

/// An item of a feed that was still processing when `push` gave up on it.
#[derive(Debug, Clone)]
struct PendingRef {
    feed_id: String,
    message_id: u32,
    seller_sku: String,
    quantity: i64,
    since: Instant,
}

/// The Amazon SP-API connector.
pub struct Amazon {
    config: Config,
    transport: Arc<dyn Transport>,
    limiters: Vec<Limiter>,
    /// Current refill rate per operation (from the plan or the channel).
    rates: Mutex<[f64; OPS]>,
    token: tokio::sync::Mutex<Option<AccessToken>>,
    /// Idempotency key → the feed message that carries it.
    pending: Mutex<HashMap<String, PendingRef>>,
    /// The wall clock of the first order poll's window and of report reads.
    clock: crate::Clock,
}

impl std::fmt::Debug for Amazon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amazon")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where a listing lives on Amazon (the agreed external id).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    seller_sku: String,
    marketplace_id: String,
    product_type: String,
}

fn parse_external(external: &External, default_marketplace: &str) -> Result<Target, ChannelError> {
    let text = |key: &str| {
        external
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let seller_sku = text("seller_sku").ok_or_else(|| {
        ChannelError::new(
            ErrorClass::Permanent,
            "missing_external_id",
            "listing has no Amazon seller_sku",
        )
    })?;
    Ok(Target {
        seller_sku,
        marketplace_id: text("marketplace_id").unwrap_or_else(|| default_marketplace.to_owned()),
        // "PRODUCT" for offer-only patches is UNCONFIRMED (<https://developer-docs.amazon.com/sp-api/docs/listings-items-api-v2021-08-01-reference>); the
        // listing's own product type is used when stored.
        product_type: text("product_type").unwrap_or_else(|| "PRODUCT".to_owned()),
    })
}

fn body_excerpt(response: &HttpResponse) -> Option<String> {
    Some(response.body_excerpt(BODY_EXCERPT))
}

/// The first entry of an `ErrorList` body (<https://developer-docs.amazon.com/sp-api/docs/response-format>).
fn first_error(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let first = value.get("errors")?.as_array()?.first()?;
    let code = first.get("code").and_then(Value::as_str)?.to_owned();
    let mut message = first
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(details) = first.get("details").and_then(Value::as_str) {
        if !details.is_empty() {
            message = format!("{message} ({details})");
        }
    }
    Some((code, message))
}

/// Classifies a non-success answer.
fn error_from(response: &HttpResponse, what: &str) -> ChannelError {
    let status = response.status;
    let (code, message) = first_error(&response.body).unwrap_or_else(|| {
        (
            format!("http_{status}"),
            format!("{what} answered HTTP {status}"),
        )
    });
    let class = match status {
        429 => ErrorClass::RateLimited,
        408 | 500..=599 => ErrorClass::Retryable,
        400..=499 => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    };
    ChannelError {
        class,
        code,
        message,
        status: Some(status),
        body: body_excerpt(response),
        retry_after: response.retry_after(),
        current: None,
    }
}

fn invalid_response(response: &HttpResponse, what: &str) -> ChannelError {
    ChannelError {
        class: ErrorClass::Retryable,
        code: "invalid_response".to_owned(),
        message: what.to_owned(),
        status: Some(response.status),
        body: body_excerpt(response),
        retry_after: None,
        current: None,
    }
}

fn json_body(response: &HttpResponse, what: &str) -> Result<Value, ChannelError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| invalid_response(response, &format!("{what}: invalid JSON: {e}")))
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// An integer that may come as a JSON number or a numeric string.
fn int_field(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[start..].find(['/', '?', '#']) {
        Some(end) => &url[..start + end],
        None => url,
    }
}

fn halted_error(error: &ChannelError) -> bool {
    error.class == ErrorClass::RateLimited || matches!(error.status, Some(401 | 403))
}

impl Amazon {
    /// Pushes `items`: per marketplace, more than `feed_above` items go in
    /// one listings feed, the others as patches.
    async fn push_items(
        &self,
        items: &[PushItem],
        feed_above: usize,
        patch_reserve: f64,
    ) -> Result<Vec<ItemOutcome>, ChannelError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        self.resume_pending(items, &mut outcomes).await;

        // Group the rest by marketplace, in order of first appearance.
        let mut groups: Vec<(String, Vec<(usize, Target)>)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            match parse_external(&item.external, &self.config.marketplace_id) {
                Ok(target) => match groups.iter_mut().find(|(m, _)| *m == target.marketplace_id) {
                    Some((_, group)) => group.push((index, target)),
                    None => groups.push((target.marketplace_id.clone(), vec![(index, target)])),
                },
                Err(error) => outcomes[index] = Some(ItemOutcome::Failed(error)),
            }
        }

        // Items whose call failed as a whole, with that error.
        let mut call_failures: Vec<Option<ChannelError>> = vec![None; items.len()];
        let mut halted: Option<ChannelError> = None;
        for (marketplace_id, group) in groups {
            if let Some(error) = &halted {
                for (index, _) in &group {
                    outcomes[*index] = Some(ItemOutcome::Failed(error.clone()));
                    call_failures[*index] = Some(error.clone());
                }
                continue;
            }
            if group.len() > feed_above {
                self.push_feed(&marketplace_id, &group, items, &mut outcomes)
                    .await;
                continue;
            }
            for (index, target) in &group {
                if let Some(error) = &halted {
                    outcomes[*index] = Some(ItemOutcome::Failed(error.clone()));
                    call_failures[*index] = Some(error.clone());
                    continue;
                }
                let outcome = self
                    .patch_one(target, quantity_to_send(&items[*index]), patch_reserve)
                    .await;
                if let ItemOutcome::Failed(error) = &outcome {
                    if error.code != "INVALID" && error.status != Some(200) {
                        call_failures[*index] = Some(error.clone());
                    }
                    // After a throttle or refused credentials the remaining
                    // calls would fail the same way.
                    if halted_error(error) {
                        halted = Some(error.clone());
                    }
                }
                outcomes[*index] = Some(outcome);
            }
        }

        // One failure that covers every item: the whole call failed.
        if let Some(Some(first)) = call_failures.first() {
            if call_failures
                .iter()
                .all(|e| e.as_ref().is_some_and(|e| e == first))
            {
                return Err(first.clone());
            }
        }
        Ok(crate::or_not_sent(outcomes))
    }

    pub fn new(config: Config, transport: Arc<dyn Transport>) -> Amazon {
        Amazon::with_clock(config, transport, Arc::new(chrono::Utc::now))
    }

    /// As [`Amazon::new`], with the wall clock the first order poll's window
    /// and report reads use (a simulated day passes its own).
    pub fn with_clock(
        config: Config,
        transport: Arc<dyn Transport>,
        clock: crate::Clock,
    ) -> Amazon {
        let limiters = Op::ALL
            .iter()
            .map(|op| {
                let (burst, rate) = op.plan();
                // Conservative: the channel's bucket starts and refills on
                // its own clock, and requests arrive with jitter.
                Limiter::under(burst, rate, PACING_MARGIN)
            })
            .collect();
        let mut rates = [0.0; OPS];
        for op in Op::ALL {
            rates[op.index()] = op.plan().1;
        }
        Amazon {
            config,
            transport,
            limiters,
            rates: Mutex::new(rates),
            token: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn endpoint(&self) -> &str {
        self.config.endpoint.trim_end_matches('/')
    }

    fn rate(&self, op: Op) -> f64 {
        let rates = match self.rates.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        rates[op.index()]
    }

    fn set_rate(&self, op: Op, rate: f64) {
        let mut rates = match self.rates.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        rates[op.index()] = rate;
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingRef>> {
        match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One token's worth of time for `op`, as a wait after a 429 without
    /// `Retry-After` (its presence on Amazon is UNCONFIRMED, <https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>).
    fn throttle_wait(&self, op: Op) -> Duration {
        let rate = self.rate(op).max(1e-6);
        Duration::from_secs_f64((1.0 / rate).clamp(1.0, 180.0))
    }

    // -----------------------------------------------------------------------
    // Calls

    /// Paces on `op`'s bucket, authenticates and sends one SP-API call.
    /// `Ok` for any answer except 429 (→ `RateLimited`, bucket blocked);
    /// a 401/403 renews the token and is sent once more.
    async fn call(
        &self,
        op: Op,
        method: http::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<HttpResponse, ChannelError> {
        self.call_leaving(op, 0.0, method, path_and_query, body)
            .await
    }

    /// `call`, paced to leave `reserve` tokens of `op`'s bucket for calls
    /// that are more urgent (`Limiter::acquire_leaving`).
    async fn call_leaving(
        &self,
        op: Op,
        reserve: f64,
        method: http::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<HttpResponse, ChannelError> {
        let limiter = &self.limiters[op.index()];
        let mut renewed = false;
        loop {
            limiter.acquire_leaving(1.0, reserve).await;
            let token = self.access_token().await?;
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            );
            headers.insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("stockd (Language=Rust)"),
            );
            let value = http::HeaderValue::from_str(&token).map_err(|_| {
                ChannelError::new(
                    ErrorClass::Permanent,
                    "invalid_token",
                    "LWA access token is not a valid header value",
                )
            })?;
            headers.insert("x-amz-access-token", value);
            let bytes = match body {
                Some(body) => {
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    body.to_string().into_bytes()
                }
                None => Vec::new(),
            };
            let request = HttpRequest {
                method: method.clone(),
                url: format!("{}{}", self.endpoint(), path_and_query),
                headers,
                body: bytes,
            };
            let response = self.transport.send(request).await?;
            self.observe_limit(op, &response);
            match response.status {
                429 => {
                    let wait = response
                        .retry_after()
                        .unwrap_or_else(|| self.throttle_wait(op));
                    limiter.block_for(wait);
                    let mut error = error_from(&response, op.name());
                    error.class = ErrorClass::RateLimited;
                    error.retry_after = Some(wait);
                    return Err(error);
                }
                // The code for an expired token is not documented:
                // renew once on any 401/403.
                401 | 403 if !renewed => {
                    renewed = true;
                    self.invalidate_token(&token).await;
                }
                _ => return Ok(response),
            }
        }
    }

    /// Adopts the rate Amazon reports for the operation (<https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>; the value
    /// format, e.g. `5.0`, is UNCONFIRMED).
    fn observe_limit(&self, op: Op, response: &HttpResponse) {
        let rate = response
            .headers
            .get("x-amzn-ratelimit-limit")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r > 0.0);
        if let Some(rate) = rate {
            self.limiters[op.index()].observe(0.0, rate * PACING_MARGIN, f64::INFINITY);
            self.set_rate(op, rate);
        }
    }

    /// Uploads to or downloads from a pre-signed document URL. The access
    /// token goes only to the SP-API host itself, never to a storage host.
    async fn document_transfer(
        &self,
        method: http::Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ChannelError> {
        let mut headers = http::HeaderMap::new();
        if body.is_some() {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(FEED_CONTENT_TYPE),
            );
        }
        if origin(url) == origin(self.endpoint()) {
            let token = self.access_token().await?;
            if let Ok(value) = http::HeaderValue::from_str(&token) {
                headers.insert("x-amz-access-token", value);
            }
        }
        let request = HttpRequest {
            method,
            url: url.to_owned(),
            headers,
            body: body.unwrap_or_default(),
        };
        let response = self.transport.send(request).await?;
        if !(200..300).contains(&response.status) {
            // Pre-signed URLs expire after 5 minutes: a fresh attempt helps.
            let mut error = error_from(&response, "feed document transfer");
            if error.class == ErrorClass::Permanent {
                error.class = ErrorClass::Retryable;
            }
            return Err(error);
        }
        Ok(response)
    }

    fn listing_path(&self, target: &Target, query: &[(&str, &str)]) -> String {
        let mut params: Vec<(&str, &str)> = vec![("marketplaceIds", &target.marketplace_id)];
        params.extend_from_slice(query);
        format!(
            "{LISTINGS_PREFIX}/{}/{}?{}",
            percent_encode(&self.config.seller_id),
            percent_encode(&target.seller_sku),
            encode_pairs(&params)
        )
    }
}

#[async_trait]
impl Connector for Amazon {
    fn kind(&self) -> &'static str {
        "amazon"
    }

    fn max_batch(&self) -> usize {
        FEED_MAX_MESSAGES
    }

    /// Patches, one per SKU at 5/s (burst 5): about a second's worth.
    fn fast_batch(&self) -> usize {
        PATCHES_PER_FAST_PUSH.min(self.config.feed_threshold).max(1)
    }

    /// A feed is followed for minutes; patches go on meanwhile.
    fn pushes_in_flight(&self) -> usize {
        2
    }

    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        self.push_items(items, self.config.feed_threshold, 0.0)
            .await
    }

    /// Feeds are submitted and followed by the tracker (`getFeed`, then the
    /// processing report), not by the push that sent them.
    fn tracks_acknowledgements(&self) -> bool {
        true
    }

    fn track_interval(&self) -> Duration {
        self.config.feed_poll_interval
    }

    fn track_timeout(&self) -> Duration {
        self.config.feed_timeout
    }

    async fn submit(&self, items: &[PushItem], bulk: bool) -> Result<Vec<Submitted>, ChannelError> {
        if bulk {
            self.submit_items(items).await
        } else {
            let outcomes = self.push(items).await?;
            Ok(outcomes.into_iter().map(Submitted::Done).collect())
        }
    }

    async fn track(&self, items: &[TrackedItem]) -> Result<Vec<Option<ItemOutcome>>, ChannelError> {
        self.track_feeds(items).await
    }

    /// A feed takes minutes at Amazon (and one per two minutes after a
    /// burst): protective updates wait for a patch instead.
    fn bulk_takes_protective(&self) -> bool {
        false
    }

    /// A bulk push of up to `feed_threshold` items (per marketplace) is sent
    /// as patches, on the bucket protective updates need.
    fn bulk_on_fast_path_up_to(&self) -> usize {
        self.config.feed_threshold
    }

    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut results = Vec::with_capacity(listings.len());
        for listing in listings {
            let target = match parse_external(&listing.external, &self.config.marketplace_id) {
                Ok(target) => target,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            match self.read_one(&target).await {
                // Throttled or refused credentials: the rest would fail too.
                Err(error) if halted_error(&error) => return Err(error),
                result => results.push(result),
            }
        }
        Ok(results)
    }

    fn bulk_read_from(&self) -> Option<usize> {
        Some(self.config.bulk_read_from)
    }

    /// The seller SKU, as the listings report's `seller-sku` shows it.
    /// `None` for a listing in another marketplace than the connector's: the
    /// report `read_all` reads covers that one marketplace only.
    fn listing_key(&self, external: &External) -> Option<String> {
        parse_external(external, &self.config.marketplace_id)
            .ok()
            .filter(|target| target.marketplace_id == self.config.marketplace_id)
            .map(|target| target.seller_sku)
    }

    async fn read_all(&self, progress: BulkProgress<'_>) -> Result<BulkRead, ChannelError> {
        self.read_listings_report(progress).await
    }

    fn polls_orders(&self) -> bool {
        true
    }

    async fn poll_orders(&self, cursor: Option<&str>) -> Result<OrderPoll, ChannelError> {
        self.poll_order_changes(cursor).await
    }

    fn webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        self.verify_notification(headers, body)
    }
}
