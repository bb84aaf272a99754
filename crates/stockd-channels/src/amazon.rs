//! Amazon Selling Partner API connector.
//!
//! Protocol details follow the channel notes (`channels/bol-amazon-gmc.md`
//! §2); section numbers below refer to them.
//!
//! - Auth: Login with Amazon refresh-token exchange; the access token is
//!   cached until shortly before it expires and sent as `x-amz-access-token`
//!   on every SP-API call (§2.1). A 401/403 renews the token once.
//! - Push, small batches: Listings Items 2021-08-01 `patchListingsItem`, one
//!   `merge` of `/attributes/fulfillment_availability` per SKU (§2.4).
//!   `ACCEPTED` is reported as applied: the channel queued the absolute value
//!   and applies it asynchronously (verification is by read-back).
//! - Push, large batches (more than `Config::feed_threshold` items):
//!   `JSON_LISTINGS_FEED` through the Feeds API 2021-06-30 (§2.5), followed
//!   to its processing report within `Config::feed_timeout`. A feed still
//!   processing at that bound is remembered: its items come back `Retryable`
//!   with code `pending`, and when the dispatcher retries them (same
//!   idempotency key) the remembered feed is checked instead of sending a
//!   new one. A `FATAL` or `CANCELLED` feed is `Retryable` (Amazon says some,
//!   none or all of it may have applied; the values are absolute, so sending
//!   them again is safe).
//! - Reads: `getListingsItem` with `includedData=fulfillmentAvailability`,
//!   the quantity of the `DEFAULT` (merchant-fulfilled) channel.
//! - Orders: polled with Orders API v2026-01-01 `searchOrders` on
//!   `lastUpdatedAfter` (§2.6), and received as `ORDER_CHANGE` notifications
//!   forwarded to stockd with an `X-Stockd-Signature` HMAC (§2.7). Both give
//!   the same dedup key per order and state.
//!
//! Every operation has its own token bucket with the published rate and
//! burst (§2.3), corrected from `x-amzn-RateLimit-Limit`; a 429 empties the
//! bucket for `Retry-After` (UNCONFIRMED on Amazon) or one token's time.

use crate::ratelimit::Limiter;
use crate::{
    constant_time_eq, Availability, ChannelError, ChannelLevel, Connector, ErrorClass, External,
    HttpRequest, HttpResponse, ItemOutcome, LevelQuery, OrderChange, OrderChangeKind, OrderLineRef,
    OrderPoll, PushItem, Transport, WebhookAction, WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
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
/// Access tokens live one hour (§2.1); renew this long before.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Items of a push that takes the patch path (about one second at the
/// `patchListingsItem` rate).
const PATCHES_PER_FAST_PUSH: usize = 5;
/// A remembered pending feed is forgotten after this long.
const PENDING_TTL: Duration = Duration::from_secs(6 * 3600);

type HmacSha256 = Hmac<Sha256>;

/// Connection settings for one seller account in one marketplace.
#[derive(Clone)]
pub struct Config {
    /// SP-API base URL, without a trailing slash.
    pub endpoint: String,
    /// LWA token endpoint (§2.1).
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
    /// `searchOrders` pages read per poll at most (burst 20, §2.3).
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
}

const OPS: usize = 7;

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
        }
    }

    /// `(burst, rate per second)` from the models' usage plans (§2.3).
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
        // "PRODUCT" for offer-only patches is UNCONFIRMED (§2.4); the
        // listing's own product type is used when stored.
        product_type: text("product_type").unwrap_or_else(|| "PRODUCT".to_owned()),
    })
}

/// Percent-encodes per RFC 3986 (unreserved characters kept).
fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn encode_pairs(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The quantity sent: never negative, 0 when the listing must not sell.
fn quantity_to_send(item: &PushItem) -> i64 {
    if item.availability == Availability::OutOfStock {
        0
    } else {
        item.quantity.max(0)
    }
}

/// One `merge` of the DEFAULT (merchant-fulfilled) channel's quantity: other
/// fields such as `lead_time_to_ship_max_days` are kept (§2.4).
fn quantity_patches(quantity: i64) -> Value {
    json!([{
        "op": "merge",
        "path": "/attributes/fulfillment_availability",
        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
    }])
}

fn body_excerpt(response: &HttpResponse) -> Option<String> {
    Some(response.body_excerpt(BODY_EXCERPT))
}

/// The first entry of an `ErrorList` body (§2.2).
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

/// base64(HMAC-SHA256(secret, body)): stockd's signature convention for
/// forwarded Amazon notifications.
fn notification_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn halted_error(error: &ChannelError) -> bool {
    error.class == ErrorClass::RateLimited || matches!(error.status, Some(401 | 403))
}

/// What one feed's processing gave for its messages.
enum FeedResult {
    /// The processing report's errors.
    Done(Report),
    /// Still processing when the bound passed.
    Pending(String),
    /// The whole feed failed; every message gets this error.
    Failed(ChannelError),
}

impl Amazon {
    /// Pushes `items`: per marketplace, more than `feed_above` items go in
    /// one listings feed, the others as patches.
    async fn push_items(
        &self,
        items: &[PushItem],
        feed_above: usize,
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
                    .patch_one(target, quantity_to_send(&items[*index]))
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
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    ItemOutcome::Failed(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_sent",
                        "item was not sent",
                    ))
                })
            })
            .collect())
    }

    pub fn new(config: Config, transport: Arc<dyn Transport>) -> Amazon {
        let limiters = Op::ALL
            .iter()
            .map(|op| {
                let (burst, rate) = op.plan();
                // Conservative: the channel's bucket starts and refills on
                // its own clock, and requests arrive with jitter.
                Limiter::new((burst - 1.0).max(1.0), rate * PACING_MARGIN)
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
    /// `Retry-After` (its presence on Amazon is UNCONFIRMED, §2.3).
    fn throttle_wait(&self, op: Op) -> Duration {
        let rate = self.rate(op).max(1e-6);
        Duration::from_secs_f64((1.0 / rate).clamp(1.0, 180.0))
    }

    // -----------------------------------------------------------------------
    // LWA (§2.1)

    async fn access_token(&self) -> Result<String, ChannelError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if Instant::now() < token.expires_at {
                return Ok(token.value.clone());
            }
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    /// Drops the cached token if it is still `value` (a concurrent renewal
    /// may already have replaced it).
    async fn invalidate_token(&self, value: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == value) {
            *slot = None;
        }
    }

    async fn fetch_token(&self) -> Result<AccessToken, ChannelError> {
        let body = encode_pairs(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &self.config.refresh_token),
            ("client_id", &self.config.client_id),
            ("client_secret", &self.config.client_secret),
        ]);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let request = HttpRequest {
            method: http::Method::POST,
            url: self.config.lwa_url.clone(),
            headers,
            body: body.into_bytes(),
        };
        let response = self.transport.send(request).await?;
        if !(200..300).contains(&response.status) {
            // LWA answers OAuth errors: `{"error": "invalid_grant", …}`.
            let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
            let code = parsed
                .as_ref()
                .and_then(|v| str_field(v, "error"))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http_{}", response.status));
            let description = parsed
                .as_ref()
                .and_then(|v| str_field(v, "error_description"))
                .unwrap_or("token request refused")
                .to_owned();
            let class = match response.status {
                429 => ErrorClass::RateLimited,
                408 | 500..=599 => ErrorClass::Retryable,
                _ => ErrorClass::Permanent,
            };
            return Err(ChannelError {
                class,
                code,
                message: format!("LWA token: {description}"),
                status: Some(response.status),
                body: body_excerpt(&response),
                retry_after: response.retry_after(),
                current: None,
            });
        }
        let value = json_body(&response, "LWA token")?;
        let access_token = str_field(&value, "access_token")
            .ok_or_else(|| invalid_response(&response, "LWA token answer has no access_token"))?
            .to_owned();
        // One hour when the answer does not say (§2.1).
        let lifetime = int_field(value.get("expires_in"))
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(Duration::from_secs(3600));
        Ok(AccessToken {
            value: access_token,
            expires_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        })
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
        let limiter = &self.limiters[op.index()];
        let mut renewed = false;
        loop {
            limiter.acquire(1.0).await;
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
                // The code for an expired token is UNCONFIRMED (§2.8):
                // renew once on any 401/403.
                401 | 403 if !renewed => {
                    renewed = true;
                    self.invalidate_token(&token).await;
                }
                _ => return Ok(response),
            }
        }
    }

    /// Adopts the rate Amazon reports for the operation (§2.3; the value
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
            encode(&self.config.seller_id),
            encode(&target.seller_sku),
            encode_pairs(&params)
        )
    }

    // -----------------------------------------------------------------------
    // Listings Items (§2.4)

    async fn patch_one(&self, target: &Target, quantity: i64) -> ItemOutcome {
        let path = self.listing_path(target, &[("issueLocale", &self.config.issue_locale)]);
        let body = json!({
            "productType": target.product_type,
            "patches": quantity_patches(quantity),
        });
        let response = match self
            .call(
                Op::PatchListingsItem,
                http::Method::PATCH,
                &path,
                Some(&body),
            )
            .await
        {
            Ok(response) => response,
            Err(error) => return ItemOutcome::Failed(error),
        };
        if !(200..300).contains(&response.status) {
            return ItemOutcome::Failed(error_from(&response, "patchListingsItem"));
        }
        let value = match json_body(&response, "patchListingsItem") {
            Ok(value) => value,
            Err(error) => return ItemOutcome::Failed(error),
        };
        match str_field(&value, "status") {
            Some("ACCEPTED") => ItemOutcome::Applied { quantity },
            // INVALID comes with HTTP 200 and the reasons in `issues` (§2.4).
            Some("INVALID") => {
                let issues: Vec<&Value> = value
                    .get("issues")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let errors: Vec<&&Value> = issues
                    .iter()
                    .filter(|i| str_field(i, "severity") == Some("ERROR"))
                    .collect();
                let shown: Vec<&&Value> = if errors.is_empty() {
                    issues.iter().collect()
                } else {
                    errors
                };
                let code = shown
                    .first()
                    .and_then(|i| str_field(i, "code"))
                    .unwrap_or("INVALID")
                    .to_owned();
                let message = shown
                    .iter()
                    .filter_map(|i| str_field(i, "message"))
                    .collect::<Vec<_>>()
                    .join("; ");
                ItemOutcome::Failed(ChannelError {
                    class: ErrorClass::Permanent,
                    code,
                    message: if message.is_empty() {
                        "submission INVALID".to_owned()
                    } else {
                        message
                    },
                    status: Some(response.status),
                    body: body_excerpt(&response),
                    retry_after: None,
                    current: None,
                })
            }
            other => ItemOutcome::Failed(ChannelError {
                class: ErrorClass::Retryable,
                code: "not_accepted".to_owned(),
                message: format!("submission status {}", other.unwrap_or("missing")),
                status: Some(response.status),
                body: body_excerpt(&response),
                retry_after: None,
                current: None,
            }),
        }
    }

    async fn read_one(&self, target: &Target) -> Result<ChannelLevel, ChannelError> {
        let path = self.listing_path(target, &[("includedData", "fulfillmentAvailability")]);
        let response = self
            .call(Op::GetListingsItem, http::Method::GET, &path, None)
            .await?;
        if !(200..300).contains(&response.status) {
            let mut error = error_from(&response, "getListingsItem");
            if response.status == 404 {
                error.code = "not_found".to_owned();
            }
            return Err(error);
        }
        let value = json_body(&response, "getListingsItem")?;
        let quantity = value
            .get("fulfillmentAvailability")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries
                    .iter()
                    .find(|e| str_field(e, "fulfillmentChannelCode") == Some("DEFAULT"))
            })
            .and_then(|e| int_field(e.get("quantity")));
        Ok(ChannelLevel {
            quantity,
            availability: quantity.map(|q| {
                if q > 0 {
                    Availability::InStock
                } else {
                    Availability::OutOfStock
                }
            }),
        })
    }

    // -----------------------------------------------------------------------
    // JSON_LISTINGS_FEED (§2.5)

    /// The feed document for `entries` of (message id, target, quantity).
    fn feed_document(&self, entries: &[(u32, &Target, i64)]) -> Value {
        let messages: Vec<Value> = entries
            .iter()
            .map(|(message_id, target, quantity)| {
                json!({
                    "messageId": message_id,
                    "sku": target.seller_sku,
                    "operationType": "PATCH",
                    "productType": target.product_type,
                    "patches": quantity_patches(*quantity),
                })
            })
            .collect();
        json!({
            "header": {
                "sellerId": self.config.seller_id,
                "version": "2.0",
                "issueLocale": self.config.issue_locale,
            },
            "messages": messages,
        })
    }

    /// Creates, uploads and submits one feed; returns its id.
    async fn submit_feed(
        &self,
        marketplace_id: &str,
        document: &Value,
    ) -> Result<String, ChannelError> {
        let response = self
            .call(
                Op::CreateFeedDocument,
                http::Method::POST,
                &format!("{FEEDS_PREFIX}/documents"),
                Some(&json!({ "contentType": FEED_CONTENT_TYPE })),
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "createFeedDocument"));
        }
        let created = json_body(&response, "createFeedDocument")?;
        let (Some(document_id), Some(url)) = (
            str_field(&created, "feedDocumentId"),
            str_field(&created, "url"),
        ) else {
            return Err(invalid_response(
                &response,
                "createFeedDocument answer lacks feedDocumentId or url",
            ));
        };
        self.document_transfer(
            http::Method::PUT,
            url,
            Some(document.to_string().into_bytes()),
        )
        .await?;
        let response = self
            .call(
                Op::CreateFeed,
                http::Method::POST,
                &format!("{FEEDS_PREFIX}/feeds"),
                Some(&json!({
                    "feedType": "JSON_LISTINGS_FEED",
                    "marketplaceIds": [marketplace_id],
                    "inputFeedDocumentId": document_id,
                })),
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "createFeed"));
        }
        let feed = json_body(&response, "createFeed")?;
        str_field(&feed, "feedId")
            .map(str::to_owned)
            .ok_or_else(|| invalid_response(&response, "createFeed answer has no feedId"))
    }

    /// One `getFeed`: the processing status and the result document id.
    async fn feed_status(&self, feed_id: &str) -> Result<(String, Option<String>), ChannelError> {
        let response = self
            .call(
                Op::GetFeed,
                http::Method::GET,
                &format!("{FEEDS_PREFIX}/feeds/{}", encode(feed_id)),
                None,
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "getFeed"));
        }
        let feed = json_body(&response, "getFeed")?;
        let status = str_field(&feed, "processingStatus")
            .ok_or_else(|| invalid_response(&response, "getFeed answer has no processingStatus"))?
            .to_owned();
        Ok((
            status,
            str_field(&feed, "resultFeedDocumentId").map(str::to_owned),
        ))
    }

    /// Interprets a finished feed's status; `None` while it still runs.
    async fn feed_outcome(
        &self,
        feed_id: &str,
        status: &str,
        result_document: Option<String>,
    ) -> Option<FeedResult> {
        match status {
            "DONE" => Some(match result_document {
                Some(document) => match self.processing_report(&document).await {
                    Ok(results) => FeedResult::Done(results),
                    Err(error) => FeedResult::Failed(error),
                },
                None => FeedResult::Failed(ChannelError::new(
                    ErrorClass::Retryable,
                    "no_report",
                    format!("feed {feed_id} is DONE without a result document"),
                )),
            }),
            // FATAL: "some, none, or all of the operations … may have
            // completed"; the values are absolute, so a resend is safe.
            "FATAL" | "CANCELLED" => Some(FeedResult::Failed(ChannelError::new(
                ErrorClass::Retryable,
                format!("feed_{}", status.to_ascii_lowercase()),
                format!("feed {feed_id} ended {status}"),
            ))),
            _ => None,
        }
    }

    /// Follows a submitted feed until it ends or `feed_timeout` passes.
    async fn follow_feed(&self, feed_id: &str) -> FeedResult {
        let deadline = Instant::now() + self.config.feed_timeout;
        let mut last = "IN_QUEUE".to_owned();
        loop {
            let next = Instant::now() + self.config.feed_poll_interval;
            if next > deadline {
                return FeedResult::Pending(last);
            }
            tokio::time::sleep_until(next).await;
            match self.feed_status(feed_id).await {
                Ok((status, document)) => {
                    if let Some(result) = self.feed_outcome(feed_id, &status, document).await {
                        return result;
                    }
                    last = status;
                }
                // Transient trouble while the feed runs: keep following.
                Err(error)
                    if matches!(error.class, ErrorClass::Retryable | ErrorClass::RateLimited) => {}
                Err(mut error) => {
                    // The feed itself may well have applied; resending is safe.
                    error.class = ErrorClass::Retryable;
                    return FeedResult::Failed(error);
                }
            }
        }
    }

    /// Downloads a processing report and maps its issues to message ids.
    async fn processing_report(&self, document_id: &str) -> Result<Report, ChannelError> {
        let response = self
            .call(
                Op::GetFeedDocument,
                http::Method::GET,
                &format!("{FEEDS_PREFIX}/documents/{}", encode(document_id)),
                None,
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "getFeedDocument"));
        }
        let document = json_body(&response, "getFeedDocument")?;
        let url = str_field(&document, "url")
            .ok_or_else(|| invalid_response(&response, "getFeedDocument answer has no url"))?;
        let download = self.document_transfer(http::Method::GET, url, None).await?;
        if download.body.starts_with(&[0x1f, 0x8b]) {
            // GZIP reports are not decoded (no decompressor in the build).
            return Err(ChannelError::new(
                ErrorClass::Retryable,
                "report_compressed",
                "the processing report is GZIP-compressed, which is not supported",
            ));
        }
        let report = json_body(&download, "processing report")?;
        let issues = report
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid_response(&download, "processing report has no issues array"))?;
        Ok(parse_report(issues, &download))
    }

    /// Resolves `pending` entries of earlier feeds with one status check each.
    async fn resume_pending(&self, items: &[PushItem], outcomes: &mut [Option<ItemOutcome>]) {
        let now = Instant::now();
        let mut by_feed: BTreeMap<String, Vec<(usize, u32, String)>> = BTreeMap::new();
        {
            let mut pending = self.pending_map();
            pending.retain(|_, p| now.duration_since(p.since) < PENDING_TTL);
            for (index, item) in items.iter().enumerate() {
                let Some(entry) = pending.get(&item.idempotency_key) else {
                    continue;
                };
                let same = parse_external(&item.external, &self.config.marketplace_id)
                    .map(|t| t.seller_sku == entry.seller_sku)
                    .unwrap_or(false)
                    && quantity_to_send(item) == entry.quantity;
                if same {
                    by_feed.entry(entry.feed_id.clone()).or_default().push((
                        index,
                        entry.message_id,
                        entry.seller_sku.clone(),
                    ));
                } else {
                    pending.remove(&item.idempotency_key);
                }
            }
        }
        for (feed_id, entries) in by_feed {
            // Kept while the feed runs or could not be asked; dropped once
            // it ended (or is unknown).
            let (result, keep) = match self.feed_status(&feed_id).await {
                Ok((status, document)) => {
                    match self.feed_outcome(&feed_id, &status, document).await {
                        Some(result) => (result, false),
                        None => (FeedResult::Pending(status), true),
                    }
                }
                Err(error) => {
                    let keep = error.class != ErrorClass::Permanent;
                    (FeedResult::Failed(error), keep)
                }
            };
            for (index, message_id, seller_sku) in &entries {
                outcomes[*index] = Some(feed_item_outcome(
                    &result,
                    &feed_id,
                    *message_id,
                    seller_sku,
                    quantity_to_send(&items[*index]),
                ));
                if !keep {
                    self.pending_map().remove(&items[*index].idempotency_key);
                }
            }
        }
    }

    /// Sends `group` (indexes into `items`, one marketplace) as one or more
    /// feeds and follows them.
    async fn push_feed(
        &self,
        marketplace_id: &str,
        group: &[(usize, Target)],
        items: &[PushItem],
        outcomes: &mut [Option<ItemOutcome>],
    ) {
        for chunk in group.chunks(FEED_MAX_MESSAGES) {
            let entries: Vec<(u32, &Target, i64)> = chunk
                .iter()
                .enumerate()
                .map(|(n, (index, target))| {
                    (n as u32 + 1, target, quantity_to_send(&items[*index]))
                })
                .collect();
            let document = self.feed_document(&entries);
            let result = match self.submit_feed(marketplace_id, &document).await {
                Ok(feed_id) => {
                    let result = self.follow_feed(&feed_id).await;
                    (Some(feed_id), result)
                }
                Err(error) => (None, FeedResult::Failed(error)),
            };
            let (feed_id, result) = result;
            let feed_id = feed_id.unwrap_or_default();
            for ((index, target), (message_id, _, quantity)) in chunk.iter().zip(&entries) {
                if matches!(result, FeedResult::Pending(_)) {
                    self.pending_map().insert(
                        items[*index].idempotency_key.clone(),
                        PendingRef {
                            feed_id: feed_id.clone(),
                            message_id: *message_id,
                            seller_sku: target.seller_sku.clone(),
                            quantity: *quantity,
                            since: Instant::now(),
                        },
                    );
                }
                outcomes[*index] = Some(feed_item_outcome(
                    &result,
                    &feed_id,
                    *message_id,
                    &target.seller_sku,
                    *quantity,
                ));
            }
        }
    }

    // -----------------------------------------------------------------------
    // Orders (§2.6)

    async fn search_orders(
        &self,
        after: &str,
        token: Option<&str>,
    ) -> Result<HttpResponse, ChannelError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("lastUpdatedAfter", after),
            ("marketplaceIds", &self.config.marketplace_id),
            ("fulfilledBy", "MERCHANT"),
            ("maxResultsPerPage", "100"),
            ("includedData", "FULFILLMENT"),
        ];
        if let Some(token) = token {
            params.push(("paginationToken", token));
        }
        let path = format!("{ORDERS_PATH}?{}", encode_pairs(&params));
        self.call(Op::SearchOrders, http::Method::GET, &path, None)
            .await
    }
}

/// A processing report's ERROR issues, by what they name.
#[derive(Debug, Default)]
struct Report {
    per_message: HashMap<u32, ChannelError>,
    /// Issues naming a SKU but no message id.
    per_sku: HashMap<String, ChannelError>,
    /// Issues naming neither: they concern every message.
    feed_level: Option<ChannelError>,
}

/// Maps a processing report's issues: an ERROR makes its message fail
/// permanently; messages without one applied (WARNING/INFO do not block).
/// An ERROR naming no message nor SKU fails every message, retryably.
fn parse_report(issues: &[Value], download: &HttpResponse) -> Report {
    let mut per_message: HashMap<u32, Vec<&Value>> = HashMap::new();
    let mut per_sku: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut feed_level: Vec<&Value> = Vec::new();
    for issue in issues {
        if str_field(issue, "severity") != Some("ERROR") {
            continue;
        }
        match int_field(issue.get("messageId")).and_then(|m| u32::try_from(m).ok()) {
            Some(message_id) => per_message.entry(message_id).or_default().push(issue),
            None => match str_field(issue, "sku") {
                Some(sku) => per_sku.entry(sku.to_owned()).or_default().push(issue),
                None => feed_level.push(issue),
            },
        }
    }
    let to_error = |class: ErrorClass, list: &[&Value]| {
        let code = list
            .first()
            .and_then(|i| str_field(i, "code"))
            .unwrap_or("feed_error")
            .to_owned();
        let message = list
            .iter()
            .filter_map(|i| str_field(i, "message"))
            .collect::<Vec<_>>()
            .join("; ");
        ChannelError {
            class,
            code,
            message,
            status: Some(download.status),
            body: Some(Value::Array(list.iter().map(|v| (*v).clone()).collect()).to_string()),
            retry_after: None,
            current: None,
        }
    };
    Report {
        per_message: per_message
            .into_iter()
            .map(|(id, list)| (id, to_error(ErrorClass::Permanent, &list)))
            .collect(),
        per_sku: per_sku
            .into_iter()
            .map(|(sku, list)| (sku, to_error(ErrorClass::Permanent, &list)))
            .collect(),
        feed_level: (!feed_level.is_empty()).then(|| to_error(ErrorClass::Retryable, &feed_level)),
    }
}

/// The outcome of one feed message.
fn feed_item_outcome(
    result: &FeedResult,
    feed_id: &str,
    message_id: u32,
    seller_sku: &str,
    quantity: i64,
) -> ItemOutcome {
    match result {
        FeedResult::Done(report) => {
            let error = report
                .per_message
                .get(&message_id)
                .or_else(|| report.per_sku.get(seller_sku))
                .or(report.feed_level.as_ref());
            match error {
                Some(error) => ItemOutcome::Failed(error.clone()),
                None => ItemOutcome::Applied { quantity },
            }
        }
        FeedResult::Pending(status) => ItemOutcome::Failed(ChannelError::new(
            ErrorClass::Retryable,
            "pending",
            format!("feed {feed_id} still {status}; checked again on the next push of this item"),
        )),
        FeedResult::Failed(error) => ItemOutcome::Failed(error.clone()),
    }
}

// ---------------------------------------------------------------------------
// Orders: searchOrders (§2.6) and ORDER_CHANGE (§2.7), one dedup key scheme.

/// What stockd does with an order in a state, from either source's status
/// names: v2026 `fulfillmentStatus` (PENDING, UNSHIPPED, …) or the
/// notification's v0 `OrderStatus` (Pending, Unshipped, …).
///
/// Orders waiting for payment or shipment hold stock (Placed); cancelled
/// ones release it. Shipped / unfulfillable / invoice states change
/// nothing: a placed order was reported in an earlier state, and shipping
/// is settled by stockd's own ship events.
fn kind_of_status(status: &str) -> Option<OrderChangeKind> {
    let normal: String = status
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    match normal.as_str() {
        "PENDING" | "PENDINGAVAILABILITY" | "UNSHIPPED" | "PARTIALLYSHIPPED" => {
            Some(OrderChangeKind::Placed)
        }
        "CANCELLED" | "CANCELED" => Some(OrderChangeKind::Cancelled),
        _ => None,
    }
}

/// The same change of the same order has the same key, whether it came from
/// a poll or a notification.
fn dedup_key(order_id: &str, kind: OrderChangeKind) -> String {
    let state = match kind {
        OrderChangeKind::Placed => "placed",
        OrderChangeKind::Cancelled => "cancelled",
        OrderChangeKind::Restocked => "restocked",
        OrderChangeKind::Refunded => "refunded",
    };
    format!("{order_id}:{state}")
}

/// Builds the change; `None` when it carries nothing to apply (a placed
/// order without matchable lines). Cancellations release the whole order
/// (empty `lines`): cancelled lines may report 0 ordered.
fn order_change(
    order_id: &str,
    kind: OrderChangeKind,
    lines: Vec<OrderLineRef>,
) -> Option<OrderChange> {
    let lines = match kind {
        OrderChangeKind::Placed => {
            if lines.is_empty() {
                return None;
            }
            lines
        }
        _ => Vec::new(),
    };
    Some(OrderChange {
        dedup_key: dedup_key(order_id, kind),
        order_id: order_id.to_owned(),
        kind,
        lines,
    })
}

fn order_line(line_id: Option<&str>, sku: Option<&str>, qty: Option<i64>) -> Option<OrderLineRef> {
    let (line_id, sku, qty) = (line_id?, sku?, qty?);
    if qty <= 0 {
        return None;
    }
    Some(OrderLineRef {
        line_id: line_id.to_owned(),
        keys: vec![("seller_sku".to_owned(), sku.to_owned())],
        qty,
    })
}

/// One v2026 `Order` → a change, or `None` (with the reason logged).
fn change_from_order(order: &Value, marketplace_id: &str) -> Option<OrderChange> {
    let order_id = str_field(order, "orderId")?;
    if let Some(marketplace) = order
        .get("salesChannel")
        .and_then(|c| str_field(c, "marketplaceId"))
    {
        if marketplace != marketplace_id {
            return None;
        }
    }
    let fulfillment = order.get("fulfillment");
    // Amazon-fulfilled orders do not draw on merchant stock.
    if fulfillment.and_then(|f| str_field(f, "fulfilledBy")) == Some("AMAZON") {
        return None;
    }
    let Some(status) = fulfillment.and_then(|f| str_field(f, "fulfillmentStatus")) else {
        tracing::warn!(order_id, "amazon order without fulfillmentStatus skipped");
        return None;
    };
    let kind = kind_of_status(status)?;
    let lines = order
        .get("orderItems")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    order_line(
                        str_field(item, "orderItemId"),
                        item.get("product").and_then(|p| str_field(p, "sellerSku")),
                        int_field(item.get("quantityOrdered")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    order_change(order_id, kind, lines)
}

/// Splits a cursor: `"<lastUpdatedAfter>"` or, while pages remain,
/// `"<lastUpdatedAfter>|<paginationToken>"`.
fn split_cursor(cursor: &str) -> (&str, Option<&str>) {
    match cursor.split_once('|') {
        Some((after, token)) if !token.is_empty() => (after, Some(token)),
        Some((after, _)) => (after, None),
        None => (cursor, None),
    }
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn notification_action(
    body: &[u8],
    seller_id: &str,
    marketplace_id: &str,
) -> Result<WebhookAction, WebhookError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::BadPayload(format!("invalid JSON: {e}")))?;
    let kind_name = value
        .get("NotificationType")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::BadPayload("missing NotificationType".into()))?;
    if kind_name != "ORDER_CHANGE" {
        return Ok(WebhookAction::Ignored {
            topic: kind_name.to_owned(),
        });
    }
    let ignored = || {
        Ok(WebhookAction::Ignored {
            topic: kind_name.to_owned(),
        })
    };
    let change = value
        .get("Payload")
        .and_then(|p| p.get("OrderChangeNotification"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            WebhookError::BadPayload("missing Payload.OrderChangeNotification".into())
        })?;
    let get = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let order_id = get(change, "AmazonOrderId")
        .ok_or_else(|| WebhookError::BadPayload("missing AmazonOrderId".into()))?;
    if let Some(seller) = get(change, "SellerId") {
        if !seller_id.is_empty() && seller != seller_id {
            return ignored();
        }
    }
    let summary = change
        .get("Summary")
        .and_then(Value::as_object)
        .ok_or_else(|| WebhookError::BadPayload(format!("order {order_id}: missing Summary")))?;
    if get(summary, "MarketplaceId").is_some_and(|m| m != marketplace_id)
        || get(summary, "FulfillmentType").as_deref() == Some("AFN")
    {
        return ignored();
    }
    let status = get(summary, "OrderStatus").ok_or_else(|| {
        WebhookError::BadPayload(format!("order {order_id}: missing OrderStatus"))
    })?;
    let Some(kind) = kind_of_status(&status) else {
        return ignored();
    };
    let items = match summary.get("OrderItems") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(WebhookError::BadPayload(format!(
                "order {order_id}: OrderItems is not an array"
            )))
        }
    };
    let lines = items
        .iter()
        .filter_map(|item| {
            order_line(
                str_field(item, "OrderItemId"),
                str_field(item, "SellerSKU"),
                int_field(item.get("Quantity")),
            )
        })
        .collect();
    match order_change(&order_id, kind, lines) {
        Some(change) => Ok(WebhookAction::Order(change)),
        // A summary without items: the next poll reads the order.
        None => ignored(),
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
        self.push_items(items, self.config.feed_threshold).await
    }

    /// A feed takes minutes at Amazon (and one per two minutes after a
    /// burst): protective updates wait for a patch instead.
    fn bulk_takes_protective(&self) -> bool {
        false
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

    fn polls_orders(&self) -> bool {
        true
    }

    async fn poll_orders(&self, cursor: Option<&str>) -> Result<OrderPoll, ChannelError> {
        let first_after;
        let (after, mut token) = match cursor.filter(|c| !c.trim().is_empty()) {
            Some(cursor) => split_cursor(cursor.trim()),
            None => {
                let lookback = chrono::Duration::from_std(self.config.order_lookback)
                    .unwrap_or_else(|_| chrono::Duration::days(1));
                first_after = (chrono::Utc::now() - lookback)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                (first_after.as_str(), None)
            }
        };
        let mut token: Option<String> = token.take().map(str::to_owned);
        let mut changes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut newest_update: Option<String> = None;
        let mut window_end: Option<String> = None;
        let mut pages = 0;
        loop {
            let response = match self.search_orders(after, token.as_deref()).await {
                Ok(response) => response,
                Err(error) => return Err(error),
            };
            if response.status == 400 && token.is_some() {
                // An expired page token (24 h): start the window again;
                // re-read orders are deduplicated.
                token = None;
                continue;
            }
            if !(200..300).contains(&response.status) {
                return Err(error_from(&response, "searchOrders"));
            }
            pages += 1;
            let page = json_body(&response, "searchOrders")?;
            let orders = page
                .get("orders")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid_response(&response, "searchOrders answer has no orders"))?;
            for order in orders {
                if let Some(updated) = str_field(order, "lastUpdatedTime") {
                    if newest_update.as_deref().is_none_or(|n| updated > n) {
                        newest_update = Some(updated.to_owned());
                    }
                }
                if let Some(change) = change_from_order(order, &self.config.marketplace_id) {
                    if seen.insert(change.dedup_key.clone()) {
                        changes.push(change);
                    }
                }
            }
            if let Some(end) = str_field(&page, "lastUpdatedBefore") {
                window_end = Some(end.to_owned());
            }
            token = page
                .get("pagination")
                .and_then(|p| str_field(p, "nextToken"))
                .map(str::to_owned);
            if token.is_none() || pages >= self.config.order_pages_per_poll.max(1) {
                break;
            }
        }
        let rate = self.rate(Op::SearchOrders).max(1e-6);
        let (cursor, next_poll_after) = match token {
            // More pages: continue from the same window soon (the bucket
            // still paces each call).
            Some(token) => (format!("{after}|{token}"), Duration::ZERO),
            // `lastUpdatedAfter` is inclusive: the window's end (or the
            // newest update seen) is where the next window starts.
            None => (
                window_end
                    .or(newest_update)
                    .unwrap_or_else(|| after.to_owned()),
                Duration::from_secs_f64((1.0 / rate).ceil()),
            ),
        };
        Ok(OrderPoll {
            changes,
            cursor: Some(cursor),
            next_poll_after,
        })
    }

    fn webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        // SQS deliveries carry no signature; stockd's forwarder signs the
        // exact body (agreed convention). An empty secret would let anyone sign.
        let Some(signature) = header_str(headers, SIGNATURE_HEADER) else {
            return Err(WebhookError::BadSignature);
        };
        if self.config.notification_secret.is_empty() {
            return Err(WebhookError::BadSignature);
        }
        let expected = notification_signature(&self.config.notification_secret, body);
        if expected.is_empty() || !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(WebhookError::BadSignature);
        }
        notification_action(body, &self.config.seller_id, &self.config.marketplace_id)
    }
}
