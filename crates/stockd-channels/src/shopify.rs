//! Shopify Admin API (GraphQL) connector.
//!
//! Protocol details follow the channel notes (`channels/shopify-woocommerce.md`
//! §1); section numbers below refer to them.
//!
//! - Pushes are absolute `inventorySetQuantities` calls on the `available`
//!   quantity, up to 250 quantities per call (§1.1, §1.3), with
//!   compare-and-set: `compareQuantity` before API version 2026-01,
//!   `changeFromQuantity` plus `@idempotent(key:)` from 2026-01 on.
//! - A stale compare or an invalid item fails only that item: its current
//!   level is read back and the rest of the batch is sent again.
//! - Reads use `nodes(ids:)` on inventory items, one location per query.
//! - Every document is paced by a cost bucket that adopts the channel's
//!   `throttleStatus` (§1.6).
//! - Webhooks: `X-Shopify-Hmac-Sha256` over the exact body, and the
//!   `orders/create`, `orders/cancelled` and `refunds/create` topics (§1.7).

use crate::ratelimit::Limiter;
use crate::{
    constant_time_eq, Availability, ChannelError, ChannelLevel, Connector, ErrorClass, External,
    HttpRequest, HttpResponse, ItemOutcome, LevelQuery, OrderChange, OrderChangeKind, OrderLineRef,
    PushItem, Transport, WebhookAction, WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The API version whose schema the connector is validated against (§1.9).
pub const DEFAULT_API_VERSION: &str = "2025-01";
/// Any array input takes at most 250 items (§1.1).
pub const MAX_BATCH: usize = 250;
/// First version with `changeFromQuantity` and `@idempotent` (§1.3).
const CHANGE_FROM_VERSION: &str = "2026-01";
/// `inventorySetQuantities` refuses totals beyond ±1,000,000,000 (§1.3).
const MAX_QUANTITY: i64 = 1_000_000_000;
const BODY_EXCERPT: usize = 2048;

type HmacSha256 = Hmac<Sha256>;

/// Connection settings for one shop.
#[derive(Debug, Clone)]
pub struct Config {
    /// e.g. `https://example.myshopify.com`, without a trailing slash.
    pub shop_url: String,
    /// `YYYY-MM` (or `unstable`); decides the compare-and-set flavour.
    pub api_version: String,
    /// Admin API access token (`X-Shopify-Access-Token`).
    pub access_token: String,
    /// The app's client secret, which signs webhooks.
    pub webhook_secret: String,
    /// Initial cost bucket size; corrected from `throttleStatus`.
    pub bucket_size: f64,
    /// Initial restore rate in points per second; corrected likewise.
    pub restore_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        // §1.6: the older published bucket, 1000 points leaking 50 per second;
        // the channel's own numbers replace it after the first answer.
        Config {
            shop_url: String::new(),
            api_version: DEFAULT_API_VERSION.to_string(),
            access_token: String::new(),
            webhook_secret: String::new(),
            bucket_size: 1000.0,
            restore_rate: 50.0,
        }
    }
}

/// The Shopify connector.
pub struct Shopify {
    config: Config,
    transport: Arc<dyn Transport>,
    limiter: Limiter,
    /// Last restore rate seen (f64 bits), for Retry-After estimates.
    restore_rate: AtomicU64,
    /// Last bucket size seen (f64 bits): no call may cost more than it holds.
    bucket_size: AtomicU64,
    change_from: bool,
    /// The largest set call answered so far: (items, the requested cost the
    /// channel computed for it). The bucket must hold the *requested* cost
    /// (§1.6), so a call of no more items reserves that, not the static
    /// estimate, which is far higher when the channel prices mutations flat.
    set_cost_seen: std::sync::Mutex<Option<(usize, f64)>>,
}

impl std::fmt::Debug for Shopify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shopify")
            .field("shop_url", &self.config.shop_url)
            .field("api_version", &self.config.api_version)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// Whether `version` uses `changeFromQuantity` + `@idempotent` (2026-01 on)
/// rather than `compareQuantity` (§1.3). Versions compare as `YYYY-MM`.
fn uses_change_from(version: &str) -> bool {
    let v = version.trim();
    if v == "unstable" {
        return true;
    }
    let b = v.as_bytes();
    let well_formed = b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit());
    well_formed && v >= CHANGE_FROM_VERSION
}

// ---------------------------------------------------------------------------
// Documents

const SET_SELECTION: &str = "inventoryAdjustmentGroup { reason referenceDocumentUri \
     changes(quantityNames: [\"available\"]) { name delta quantityAfterChange item { id } location { id } } } \
     userErrors { code field message }";

const LEVELS_DOCUMENT: &str = "query StockdLevels($ids: [ID!]!, $locationId: ID!) { \
     nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { \
     quantities(names: [\"available\"]) { name quantity } } } } }";

/// The set mutation; with a key, the 2026-01 `@idempotent` directive (§1.3).
/// The key is inlined like Shopify's examples; it is hex and dashes only.
fn set_document(idempotency_key: Option<&str>) -> String {
    let directive = match idempotency_key {
        Some(key) => format!(" @idempotent(key: \"{key}\")"),
        None => String::new(),
    };
    format!(
        "mutation StockdSetQuantities($input: InventorySetQuantitiesInput!) {{ \
         inventorySetQuantities(input: $input){directive} {{ {SET_SELECTION} }} }}"
    )
}

/// Every GraphQL document the connector can send: the level query, the set
/// mutation for versions before 2026-01, and the 2026-01+ set mutation (with
/// an example idempotency key; real keys differ only in that literal).
pub fn graphql_documents() -> Vec<String> {
    let example_key = uuid_from_digest(&Sha256::digest(b"example"));
    vec![
        LEVELS_DOCUMENT.to_string(),
        set_document(None),
        set_document(Some(&example_key)),
    ]
}

// Requested-cost estimates (§1.6: objects 1, scalars 0, lists counted once per
// expected element). Mutations are assumed to cost 10 on top (Shopify's usual
// mutation cost; the note does not give it), which only errs high. Whatever
// is overestimated comes back with the refund of requested − actual.
fn set_cost(items: usize) -> f64 {
    // payload + group + userErrors, and per item one change with item and location.
    10.0 + 3.0 + 3.0 * items as f64
}

fn levels_cost(items: usize) -> f64 {
    // Per id: the item, its level and the one requested quantity.
    1.0 + 3.0 * items as f64
}

/// Tokens taken before sending: the estimate plus a small margin, so that a
/// paced client stays clear of the channel's own count.
fn with_margin(cost: f64) -> f64 {
    cost * 1.02 + 2.0
}

// ---------------------------------------------------------------------------
// Ids

/// A GID of `kind` from a GID string, a numeric string or a JSON number.
/// Numbers are kept as integers: REST ids exceed 2^53 (§1.1).
fn gid(external: &External, key: &str, kind: &str) -> Result<String, ChannelError> {
    let missing = || {
        ChannelError::new(
            ErrorClass::Permanent,
            "missing_external_id",
            format!("listing has no Shopify {key}"),
        )
    };
    let invalid = |v: &Value| {
        ChannelError::new(
            ErrorClass::Permanent,
            "invalid_external_id",
            format!("listing's Shopify {key} is not a {kind} id: {v}"),
        )
    };
    let value = external.get(key).ok_or_else(missing)?;
    let prefix = format!("gid://shopify/{kind}/");
    match value {
        Value::Null => Err(missing()),
        Value::Number(n) => match n.as_u64() {
            Some(id) if id > 0 => Ok(format!("{prefix}{id}")),
            _ => Err(invalid(value)),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                Err(missing())
            } else if let Some(tail) = s.strip_prefix(&prefix) {
                let numeric = tail.split('?').next().unwrap_or_default();
                if !numeric.is_empty() && numeric.bytes().all(|c| c.is_ascii_digit()) {
                    Ok(s.to_string())
                } else {
                    Err(invalid(value))
                }
            } else if s.bytes().all(|c| c.is_ascii_digit()) {
                Ok(format!("{prefix}{s}"))
            } else {
                Err(invalid(value))
            }
        }
        _ => Err(invalid(value)),
    }
}

fn item_and_location(external: &External) -> Result<(String, String), ChannelError> {
    let item = gid(external, "inventory_item_id", "InventoryItem")?;
    let location = gid(external, "location_id", "Location")?;
    Ok((item, location))
}

// ---------------------------------------------------------------------------
// Responses

/// A successful (2xx, no top-level errors) GraphQL answer.
struct GqlOk {
    data: Value,
    status: u16,
    excerpt: String,
}

#[derive(Debug, Clone, Copy)]
struct ThrottleStatus {
    maximum: f64,
    available: f64,
    restore_rate: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    requested: Option<f64>,
    actual: Option<f64>,
    throttle: Option<ThrottleStatus>,
}

impl Cost {
    /// `extensions.cost` (§1.6).
    fn from_response(body: &Value) -> Option<Cost> {
        let cost = body.get("extensions")?.get("cost")?;
        let throttle = cost.get("throttleStatus").and_then(|t| {
            Some(ThrottleStatus {
                maximum: t.get("maximumAvailable")?.as_f64()?,
                available: t.get("currentlyAvailable")?.as_f64()?,
                restore_rate: t.get("restoreRate")?.as_f64()?,
            })
        });
        Some(Cost {
            requested: cost.get("requestedQueryCost").and_then(Value::as_f64),
            actual: cost.get("actualQueryCost").and_then(Value::as_f64),
            throttle,
        })
    }
}

fn error_codes(body: &Value) -> Vec<String> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e.pointer("/extensions/code")
                        .and_then(Value::as_str)
                        .unwrap_or("GRAPHQL_ERROR")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn error_messages(body: &Value) -> String {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// Top-level error codes that mean "try again" rather than "this request is wrong".
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "INTERNAL_SERVER_ERROR"
            | "INTERNAL_ERROR"
            | "SERVICE_UNAVAILABLE"
            | "TIMEOUT"
            | "IDEMPOTENCY_CONCURRENT_REQUEST"
    )
}

/// One `InventorySetQuantitiesUserError` (§1.3).
#[derive(Debug, Clone)]
struct UserError {
    code: String,
    field: Vec<String>,
    message: String,
}

impl UserError {
    fn parse(v: &Value) -> UserError {
        UserError {
            code: v
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            field: v
                .get("field")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .map(|p| match p {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Which quantity the error names: the index after `quantities` in the
    /// field path (`["input", "quantities", "3", "compareQuantity"]`).
    fn position(&self) -> Option<usize> {
        let after = self
            .field
            .iter()
            .position(|p| p == "quantities")
            .and_then(|i| self.field.get(i + 1));
        match after {
            Some(p) => p.parse().ok(),
            None => self.field.iter().find_map(|p| p.parse().ok()),
        }
    }

    fn is_stale(&self) -> bool {
        matches!(
            self.code.as_str(),
            "COMPARE_QUANTITY_STALE" | "CHANGE_FROM_QUANTITY_STALE"
        )
    }
}

// ---------------------------------------------------------------------------
// Push bookkeeping

#[derive(Debug, Clone)]
struct Entry {
    /// Position in the `push` input.
    index: usize,
    item: String,
    location: String,
    quantity: i64,
    /// What the channel is believed to hold (`compareQuantity` /
    /// `changeFromQuantity`); `None` only with `changeFromQuantity`, where an
    /// explicit null opts out of the check (§1.3).
    compare: Option<i64>,
    idempotency_key: String,
    reference: String,
}

struct SetAnswer {
    user_errors: Vec<UserError>,
    /// `quantityAfterChange` of `available` per (item, location).
    after: HashMap<(String, String), Option<i64>>,
    status: u16,
    excerpt: String,
}

/// Whether `reference` is a URI with a scheme; §1.3 accepts `gid://app/Entity/id` or any
/// other URI with a scheme.
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, rest)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `referenceDocumentUri` for one call. One shared reference is sent as is
/// (made into `gid://stockd/Reference/…` when it has no scheme); several
/// references in one call are named as one batch in the preferred
/// `gid://[app]/[entity]/[id]` form (§1.3).
fn reference_uri(round: &[Entry]) -> String {
    let first = round.first().map(|e| e.reference.as_str()).unwrap_or("");
    if !first.is_empty() && round.iter().all(|e| e.reference == first) {
        if has_scheme(first) {
            return first.to_string();
        }
        return format!("gid://stockd/Reference/{}", percent_encode(first));
    }
    let mut hasher = Sha256::new();
    for e in round {
        hasher.update(e.reference.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("gid://stockd/PushBatch/{hex}")
}

fn uuid_from_digest(digest: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // RFC 4122 name-based layout: version 5, variant 10.
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `@idempotent` key of one call: a UUID derived from the items'
/// idempotency keys and the exact values sent, so a retry of the same batch
/// reuses it and a different call (a subset after per-item errors, other
/// values) never collides with it (IDEMPOTENCY_KEY_PARAMETER_MISMATCH, §1.3).
fn batch_idempotency_key(round: &[Entry], reference: &str, attempt: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"stockd/shopify/inventorySetQuantities\0");
    for e in round {
        let compare = e
            .compare
            .map_or_else(|| "null".to_string(), |c| c.to_string());
        for part in [
            e.idempotency_key.as_str(),
            e.item.as_str(),
            e.location.as_str(),
            &e.quantity.to_string(),
            &compare,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
    }
    hasher.update(reference.as_bytes());
    hasher.update([0]);
    if attempt > 0 {
        hasher.update(format!("attempt-{attempt}").as_bytes());
    }
    uuid_from_digest(&hasher.finalize())
}

fn level_of(quantity: i64) -> ChannelLevel {
    ChannelLevel {
        quantity: Some(quantity),
        availability: Some(if quantity > 0 {
            Availability::InStock
        } else {
            Availability::OutOfStock
        }),
    }
}

fn with_response(mut e: ChannelError, status: u16, excerpt: &str) -> ChannelError {
    e.status = Some(status);
    e.body = Some(excerpt.to_string());
    e
}

// ---------------------------------------------------------------------------

impl Shopify {
    pub fn new(config: Config, transport: Arc<dyn Transport>) -> Shopify {
        let limiter = Limiter::new(config.bucket_size, config.restore_rate);
        let change_from = uses_change_from(&config.api_version);
        let restore_rate = AtomicU64::new(config.restore_rate.to_bits());
        let bucket_size = AtomicU64::new(config.bucket_size.to_bits());
        Shopify {
            config,
            transport,
            limiter,
            restore_rate,
            bucket_size,
            change_from,
            set_cost_seen: std::sync::Mutex::new(None),
        }
    }

    /// What a set call of `items` will be asked to hold: the channel's own
    /// figure for a call at least as large, else the static estimate.
    fn set_estimate(&self, items: usize) -> f64 {
        let seen = self.set_cost_seen.lock().ok().and_then(|g| *g);
        match seen {
            Some((n, requested)) if n >= items => requested.min(set_cost(items)),
            _ => set_cost(items),
        }
    }

    fn learn_set_cost(&self, items: usize, requested: f64) {
        if let Ok(mut seen) = self.set_cost_seen.lock() {
            let larger = seen.is_none_or(|(n, r)| items > n || (items == n && requested > r));
            if larger {
                *seen = Some((items, requested));
            }
        }
    }

    /// The GraphQL endpoint (§1.1).
    pub fn endpoint(&self) -> String {
        format!(
            "{}/admin/api/{}/graphql.json",
            self.config.shop_url.trim_end_matches('/'),
            self.config.api_version
        )
    }

    /// Items per call so that one call's cost (with margin) fits in the
    /// bucket: a call costing more than the bucket holds is throttled forever.
    fn items_per_call(&self, cost: fn(usize) -> f64) -> usize {
        let size = f64::from_bits(self.bucket_size.load(Ordering::Relaxed));
        let mut n = MAX_BATCH;
        while n > 1 && with_margin(cost(n)) > size {
            n = n * 9 / 10;
        }
        n.max(1)
    }

    fn current_restore_rate(&self) -> f64 {
        let rate = f64::from_bits(self.restore_rate.load(Ordering::Relaxed));
        if rate > 0.0 {
            rate
        } else {
            1.0
        }
    }

    /// Sends one document, paced by the cost bucket; classifies every failure.
    async fn graphql(
        &self,
        query: &str,
        variables: Value,
        estimate: f64,
        set_items: Option<usize>,
    ) -> Result<GqlOk, ChannelError> {
        let taken = with_margin(estimate);
        self.limiter.acquire(taken).await;

        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .map_err(|e| ChannelError::new(ErrorClass::Permanent, "encode", e.to_string()))?;
        let mut headers = http::HeaderMap::new();
        let token = http::HeaderValue::from_str(&self.config.access_token).map_err(|_| {
            ChannelError::new(
                ErrorClass::Permanent,
                "bad_config",
                "access token is not a valid header value",
            )
        })?;
        headers.insert("x-shopify-access-token", token);
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let request = HttpRequest {
            method: http::Method::POST,
            url: self.endpoint(),
            headers,
            body,
        };
        let response = match self.transport.send(request).await {
            Ok(response) => response,
            Err(mut e) => {
                // No answer: the tokens stay spent (the request may have run).
                e.class = ErrorClass::Retryable;
                return Err(e);
            }
        };
        self.classify(response, taken, set_items)
    }

    fn classify(
        &self,
        response: HttpResponse,
        taken: f64,
        set_items: Option<usize>,
    ) -> Result<GqlOk, ChannelError> {
        let status = response.status;
        let excerpt = response.body_excerpt(BODY_EXCERPT);
        let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
        let cost = parsed.as_ref().and_then(Cost::from_response);
        if let (Some(items), Some(requested)) = (set_items, cost.and_then(|c| c.requested)) {
            self.learn_set_cost(items, requested);
        }

        // §1.6: refund requested − actual, then adopt the channel's bucket
        // (observe never raises the local count above the channel's).
        if let Some(cost) = cost {
            if let Some(actual) = cost.actual {
                self.limiter.refund((taken - actual).max(0.0));
            }
            if let Some(t) = cost.throttle {
                self.limiter.observe(t.maximum, t.restore_rate, t.available);
                if t.restore_rate > 0.0 {
                    self.restore_rate
                        .store(t.restore_rate.to_bits(), Ordering::Relaxed);
                }
                if t.maximum > 0.0 {
                    self.bucket_size
                        .store(t.maximum.to_bits(), Ordering::Relaxed);
                }
            }
        }

        let codes = parsed.as_ref().map(error_codes).unwrap_or_default();
        let throttled = status == 429 || codes.iter().any(|c| c == "THROTTLED");
        if throttled {
            return Err(self.throttled(&response, cost, taken, status, &excerpt));
        }

        let fail = |class: ErrorClass, code: String, message: String| {
            with_response(ChannelError::new(class, code, message), status, &excerpt)
        };
        match status {
            200..=299 => {}
            500..=599 => {
                return Err(fail(
                    ErrorClass::Retryable,
                    format!("http_{status}"),
                    format!("Shopify answered HTTP {status}"),
                ))
            }
            _ => {
                // 401/403/404 (token, scope, shop), 400/422 and any other 4xx:
                // the same request cannot succeed later.
                return Err(fail(
                    ErrorClass::Permanent,
                    format!("http_{status}"),
                    format!("Shopify answered HTTP {status}"),
                ));
            }
        }

        let Some(body) = parsed else {
            return Err(fail(
                ErrorClass::Retryable,
                "bad_response".into(),
                "response body is not JSON".into(),
            ));
        };
        if let Some(code) = codes.first() {
            let class = if codes.iter().all(|c| is_transient_code(c)) {
                ErrorClass::Retryable
            } else {
                ErrorClass::Permanent
            };
            return Err(fail(class, code.clone(), error_messages(&body)));
        }
        match body.get("data") {
            Some(data) if data.is_object() => Ok(GqlOk {
                data: data.clone(),
                status,
                excerpt,
            }),
            _ => Err(fail(
                ErrorClass::Retryable,
                "bad_response".into(),
                "response has no data".into(),
            )),
        }
    }

    /// THROTTLED as HTTP 200 or 429 (§1.6): wait for `Retry-After` when
    /// given, else until the channel's bucket holds the requested cost.
    /// Nothing leaves before then.
    fn throttled(
        &self,
        response: &HttpResponse,
        cost: Option<Cost>,
        taken: f64,
        status: u16,
        excerpt: &str,
    ) -> ChannelError {
        let throttle = cost.and_then(|c| c.throttle);
        let requested = cost.and_then(|c| c.requested).unwrap_or(taken);
        let header = response.retry_after();
        let wait = match (header, throttle) {
            (Some(after), _) => after,
            (None, Some(t)) if t.restore_rate > 0.0 => {
                let missing = (requested.min(t.maximum) - t.available).max(0.0);
                Duration::from_secs_f64(missing / t.restore_rate + 0.05)
            }
            // Nothing to go by: as long as an empty bucket takes to hold the cost.
            (None, _) => Duration::from_secs_f64(taken / self.current_restore_rate() + 0.05),
        };
        self.limiter.block_for(wait);
        if header.is_none() {
            if let Some(t) = throttle {
                // block_for empties the bucket; at the end of the wait the
                // channel holds what it reported plus the refill meanwhile.
                let then = (t.available + t.restore_rate * wait.as_secs_f64()).min(t.maximum);
                self.limiter.refund(then.max(0.0));
            }
        }
        let mut e = with_response(
            ChannelError::new(
                ErrorClass::RateLimited,
                "THROTTLED",
                format!("Shopify throttled the request; retry in {wait:?}"),
            ),
            status,
            excerpt,
        );
        e.retry_after = Some(wait);
        e
    }

    /// Levels for resolved (item, location) pairs, in the order given.
    async fn read_resolved(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut out: Vec<Option<Result<ChannelLevel, ChannelError>>> = vec![None; pairs.len()];
        // One location per query (`inventoryLevel(locationId:)`), in first-seen order.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, (_, location)) in pairs.iter().enumerate() {
            let g = *group_of.entry(location.as_str()).or_insert_with(|| {
                groups.push((location.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        let mut any_answered = false;
        let mut failure: Option<ChannelError> = None;
        'groups: for (location, positions) in &groups {
            for chunk in positions.chunks(self.items_per_call(levels_cost)) {
                let ids: Vec<&str> = chunk.iter().map(|&i| pairs[i].0.as_str()).collect();
                let variables = json!({ "ids": ids, "locationId": location });
                let answer = match self
                    .graphql(LEVELS_DOCUMENT, variables, levels_cost(chunk.len()), None)
                    .await
                {
                    Ok(answer) => answer,
                    Err(e) => {
                        failure = Some(e);
                        break 'groups;
                    }
                };
                any_answered = true;
                let nodes = answer.data.get("nodes").and_then(Value::as_array);
                for (k, &i) in chunk.iter().enumerate() {
                    let node = nodes.and_then(|n| n.get(k));
                    out[i] = Some(level_from_node(
                        &pairs[i].0,
                        node,
                        chunk.len(),
                        nodes,
                        &answer,
                    ));
                }
            }
        }
        if let Some(e) = failure {
            if !any_answered {
                return Err(e);
            }
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                *slot = Some(Err(e.clone()));
            }
        }
        Ok(out
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    Err(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_read",
                        "level was not read",
                    ))
                })
            })
            .collect())
    }

    /// One `inventorySetQuantities` call for `round`.
    async fn send_set(&self, round: &[Entry], attempt: u32) -> Result<SetAnswer, ChannelError> {
        let quantities: Vec<Value> = round
            .iter()
            .map(|e| {
                let mut q = json!({
                    "inventoryItemId": e.item,
                    "locationId": e.location,
                    "quantity": e.quantity,
                });
                if self.change_from {
                    // §1.3 (2026-01+): explicit null opts out of the check.
                    q["changeFromQuantity"] = e.compare.map_or(Value::Null, Value::from);
                } else {
                    q["compareQuantity"] = e.compare.map_or(Value::Null, Value::from);
                }
                q
            })
            .collect();
        let reference = reference_uri(round);
        let variables = json!({ "input": {
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": reference,
            "quantities": quantities,
        }});
        let key = self
            .change_from
            .then(|| batch_idempotency_key(round, &reference, attempt));
        let document = set_document(key.as_deref());
        let answer = self
            .graphql(
                &document,
                variables,
                self.set_estimate(round.len()),
                Some(round.len()),
            )
            .await?;
        let bad = |message: &str| {
            with_response(
                ChannelError::new(ErrorClass::Retryable, "bad_response", message),
                answer.status,
                &answer.excerpt,
            )
        };
        let payload = answer
            .data
            .get("inventorySetQuantities")
            .filter(|p| p.is_object())
            .ok_or_else(|| bad("no inventorySetQuantities payload"))?;
        let user_errors = match payload.get("userErrors") {
            Some(Value::Array(list)) => list.iter().map(UserError::parse).collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(bad("userErrors is not a list")),
        };
        let mut after = HashMap::new();
        if let Some(changes) = payload
            .pointer("/inventoryAdjustmentGroup/changes")
            .and_then(Value::as_array)
        {
            for change in changes {
                if change.get("name").and_then(Value::as_str) != Some("available") {
                    continue;
                }
                let item = change.pointer("/item/id").and_then(Value::as_str);
                let location = change.pointer("/location/id").and_then(Value::as_str);
                if let (Some(item), Some(location)) = (item, location) {
                    let quantity = change.get("quantityAfterChange").and_then(Value::as_i64);
                    after.insert((item.to_string(), location.to_string()), quantity);
                }
            }
        }
        Ok(SetAnswer {
            user_errors,
            after,
            status: answer.status,
            excerpt: answer.excerpt,
        })
    }

    /// Current levels for stale entries, as `Stale` failures.
    async fn stale_failures(
        &self,
        stale: &[(Entry, String)],
        status: u16,
        excerpt: &str,
    ) -> Vec<(usize, ChannelError)> {
        let pairs: Vec<(String, String)> = stale
            .iter()
            .map(|(e, _)| (e.item.clone(), e.location.clone()))
            .collect();
        let levels = self.read_resolved(&pairs).await;
        stale
            .iter()
            .enumerate()
            .map(|(k, (entry, message))| {
                let current = match &levels {
                    Ok(levels) => levels
                        .get(k)
                        .and_then(|l| l.as_ref().ok())
                        .and_then(|l| l.quantity),
                    Err(_) => None,
                };
                let code = if self.change_from {
                    "CHANGE_FROM_QUANTITY_STALE"
                } else {
                    "COMPARE_QUANTITY_STALE"
                };
                let mut e = with_response(
                    ChannelError::new(ErrorClass::Stale, code, message.clone()),
                    status,
                    excerpt,
                );
                e.current = current;
                (entry.index, e)
            })
            .collect()
    }

    /// Sends one chunk (≤ 250) until every entry has an outcome: entries
    /// failing with a user error are taken out and the rest resent. Returns
    /// how many were applied; `Err` when a call failed as a whole.
    async fn push_chunk(
        &self,
        chunk: Vec<Entry>,
        outcomes: &mut [Option<ItemOutcome>],
        applied_so_far: usize,
    ) -> Result<usize, ChannelError> {
        let mut applied = 0;
        let mut round: Vec<Entry> = Vec::with_capacity(chunk.len());
        let mut seen = HashSet::new();
        for entry in chunk {
            if seen.insert((entry.item.clone(), entry.location.clone())) {
                round.push(entry);
            } else {
                outcomes[entry.index] = Some(ItemOutcome::Failed(ChannelError::new(
                    ErrorClass::Permanent,
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    "the same inventory item and location appear twice in one batch",
                )));
            }
        }
        let mut attempt = 0u32;
        while !round.is_empty() {
            let answer = match self.send_set(&round, attempt).await {
                Ok(answer) => answer,
                Err(e) => {
                    if applied_so_far + applied == 0 {
                        return Err(e);
                    }
                    for entry in &round {
                        outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                    }
                    return Ok(applied);
                }
            };
            let SetAnswer {
                user_errors,
                after,
                status,
                excerpt,
            } = answer;
            let applied_quantity = |entry: &Entry| -> Option<i64> {
                after
                    .get(&(entry.item.clone(), entry.location.clone()))
                    .map(|q| q.unwrap_or(entry.quantity))
            };
            if user_errors.is_empty() {
                for entry in &round {
                    let quantity = applied_quantity(entry).unwrap_or(entry.quantity);
                    outcomes[entry.index] = Some(ItemOutcome::Applied { quantity });
                }
                applied += round.len();
                break;
            }
            if let Some(ue) = user_errors
                .iter()
                .find(|u| u.code == "IDEMPOTENCY_CONCURRENT_REQUEST")
            {
                let e = with_response(
                    ChannelError::new(ErrorClass::Retryable, ue.code.clone(), ue.message.clone()),
                    status,
                    &excerpt,
                );
                if applied_so_far + applied == 0 {
                    return Err(e);
                }
                for entry in &round {
                    outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                }
                return Ok(applied);
            }
            // §1.3: "Retry with a new idempotency key" — once.
            if attempt == 0
                && user_errors
                    .iter()
                    .any(|u| u.code == "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")
            {
                attempt = 1;
                continue;
            }

            // Attribute each error to a quantity of this round.
            let mut failed: HashMap<usize, ChannelError> = HashMap::new();
            let mut stale: HashMap<usize, String> = HashMap::new();
            let mut unattributed_stale: Option<String> = None;
            let mut unattributed: Option<ChannelError> = None;
            for ue in &user_errors {
                let position = ue
                    .position()
                    .filter(|&p| p < round.len())
                    .or((round.len() == 1).then_some(0));
                let as_error = || {
                    with_response(
                        ChannelError::new(
                            ErrorClass::Permanent,
                            ue.code.clone(),
                            ue.message.clone(),
                        ),
                        status,
                        &excerpt,
                    )
                };
                match (position, ue.is_stale()) {
                    (Some(p), true) => {
                        stale.insert(p, ue.message.clone());
                    }
                    (Some(p), false) => {
                        failed.entry(p).or_insert_with(as_error);
                    }
                    (None, true) => unattributed_stale = Some(ue.message.clone()),
                    (None, false) => unattributed = unattributed.or_else(|| Some(as_error())),
                }
            }
            // A channel that applied the valid quantities despite errors says
            // so in `changes`; those are done and must not be resent.
            let mut done: HashSet<usize> = HashSet::new();
            for (p, entry) in round.iter().enumerate() {
                if failed.contains_key(&p) || stale.contains_key(&p) {
                    continue;
                }
                if let Some(quantity) = applied_quantity(entry) {
                    outcomes[entry.index] = Some(ItemOutcome::Applied { quantity });
                    done.insert(p);
                    applied += 1;
                }
            }
            if let Some(e) = unattributed {
                // An error naming no quantity concerns the whole call.
                for p in 0..round.len() {
                    if !done.contains(&p) && !stale.contains_key(&p) {
                        failed.entry(p).or_insert_with(|| e.clone());
                    }
                }
            }
            if let Some(message) = unattributed_stale {
                // Find the stale ones by reading: those whose count differs
                // from the compare value (all of them if none can be told).
                let candidates: Vec<usize> = (0..round.len())
                    .filter(|p| {
                        !done.contains(p) && !failed.contains_key(p) && !stale.contains_key(p)
                    })
                    .collect();
                let pairs: Vec<(String, String)> = candidates
                    .iter()
                    .map(|&p| (round[p].item.clone(), round[p].location.clone()))
                    .collect();
                let levels = self.read_resolved(&pairs).await.ok();
                let mut found = false;
                for (k, &p) in candidates.iter().enumerate() {
                    let current = levels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .and_then(|l| l.as_ref().ok())
                        .and_then(|l| l.quantity);
                    if let (Some(current), Some(compare)) = (current, round[p].compare) {
                        if current != compare {
                            stale.insert(p, message.clone());
                            found = true;
                        }
                    }
                }
                if !found {
                    for p in candidates {
                        stale.insert(p, message.clone());
                    }
                }
            }

            let stale_entries: Vec<(Entry, String)> = stale
                .iter()
                .map(|(&p, message)| (round[p].clone(), message.clone()))
                .collect();
            for (index, e) in self.stale_failures(&stale_entries, status, &excerpt).await {
                outcomes[index] = Some(ItemOutcome::Failed(e));
            }
            for (&p, e) in &failed {
                outcomes[round[p].index] = Some(ItemOutcome::Failed(e.clone()));
            }
            let before = round.len();
            round = round
                .into_iter()
                .enumerate()
                .filter(|(p, _)| {
                    !done.contains(p) && !failed.contains_key(p) && !stale.contains_key(p)
                })
                .map(|(_, entry)| entry)
                .collect();
            if round.len() == before {
                // Errors that removed nothing cannot be resolved by resending.
                let e = with_response(
                    ChannelError::new(
                        ErrorClass::Permanent,
                        "unattributed_user_error",
                        "user errors named no quantity of the call",
                    ),
                    status,
                    &excerpt,
                );
                for entry in &round {
                    outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                }
                break;
            }
        }
        Ok(applied)
    }
}

/// One `nodes` entry as a level (`None` node: unknown item; `null` level:
/// not stocked at the location).
fn level_from_node(
    asked: &str,
    node: Option<&Value>,
    expected: usize,
    nodes: Option<&Vec<Value>>,
    answer: &GqlOk,
) -> Result<ChannelLevel, ChannelError> {
    let fail = |class: ErrorClass, code: &str, message: &str| {
        Err(with_response(
            ChannelError::new(class, code, message),
            answer.status,
            &answer.excerpt,
        ))
    };
    if nodes.map(Vec::len) != Some(expected) {
        return fail(
            ErrorClass::Retryable,
            "bad_response",
            "nodes does not match the ids asked for",
        );
    }
    let Some(node) = node.filter(|n| !n.is_null()) else {
        return fail(
            ErrorClass::Permanent,
            "INVALID_INVENTORY_ITEM",
            "no such inventory item",
        );
    };
    if node
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| id != asked)
    {
        return fail(
            ErrorClass::Retryable,
            "bad_response",
            "nodes answered for another id",
        );
    }
    let Some(level) = node.get("inventoryLevel").filter(|l| !l.is_null()) else {
        return fail(
            ErrorClass::Permanent,
            "ITEM_NOT_STOCKED_AT_LOCATION",
            "the inventory item is not stocked at the location",
        );
    };
    let available = level
        .get("quantities")
        .and_then(Value::as_array)
        .and_then(|qs| {
            qs.iter()
                .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
        })
        .and_then(|q| q.get("quantity"))
        .and_then(Value::as_i64);
    match available {
        Some(quantity) => Ok(level_of(quantity)),
        None => fail(
            ErrorClass::Retryable,
            "bad_response",
            "level has no available quantity",
        ),
    }
}

#[async_trait]
impl Connector for Shopify {
    fn kind(&self) -> &'static str {
        "shopify"
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let mut ready: Vec<Entry> = Vec::new();
        let mut unknown: Vec<Entry> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let (inventory_item, location) = match item_and_location(&item.external) {
                Ok(ids) => ids,
                Err(e) => {
                    outcomes[index] = Some(ItemOutcome::Failed(e));
                    continue;
                }
            };
            let code = if item.quantity < 0 {
                Some("INVALID_QUANTITY_NEGATIVE")
            } else if item.quantity > MAX_QUANTITY {
                Some("INVALID_QUANTITY_TOO_HIGH")
            } else {
                None
            };
            if let Some(code) = code {
                outcomes[index] = Some(ItemOutcome::Failed(ChannelError::new(
                    ErrorClass::Permanent,
                    code,
                    format!("quantity {} is out of Shopify's range", item.quantity),
                )));
                continue;
            }
            let entry = Entry {
                index,
                item: inventory_item,
                location,
                quantity: item.quantity,
                compare: item.believed.map(|b| b.clamp(-MAX_QUANTITY, MAX_QUANTITY)),
                idempotency_key: item.idempotency_key.clone(),
                reference: item.reference.clone(),
            };
            if entry.compare.is_none() && !self.change_from {
                unknown.push(entry);
            } else {
                ready.push(entry);
            }
        }

        // Before 2026-01 every quantity needs a compareQuantity (§1.3): read
        // the unknown ones first.
        if !unknown.is_empty() {
            let pairs: Vec<(String, String)> = unknown
                .iter()
                .map(|e| (e.item.clone(), e.location.clone()))
                .collect();
            match self.read_resolved(&pairs).await {
                Ok(levels) => {
                    for (mut entry, level) in unknown.into_iter().zip(levels) {
                        match level {
                            Ok(ChannelLevel {
                                quantity: Some(q), ..
                            }) => {
                                entry.compare = Some(q);
                                ready.push(entry);
                            }
                            Ok(_) => {
                                outcomes[entry.index] =
                                    Some(ItemOutcome::Failed(ChannelError::new(
                                        ErrorClass::Retryable,
                                        "bad_response",
                                        "no current level to compare with",
                                    )))
                            }
                            Err(e) => outcomes[entry.index] = Some(ItemOutcome::Failed(e)),
                        }
                    }
                }
                Err(e) => {
                    if ready.is_empty() {
                        return Err(e);
                    }
                    for entry in unknown {
                        outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                    }
                }
            }
            ready.sort_by_key(|e| e.index);
        }

        let mut applied = 0;
        let mut rest = ready.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Entry> = rest.by_ref().take(self.items_per_call(set_cost)).collect();
            match self.push_chunk(chunk, &mut outcomes, applied).await {
                Ok(n) => applied += n,
                Err(e) => {
                    // Nothing applied anywhere: the whole call failed.
                    if applied == 0 {
                        return Err(e);
                    }
                    for slot in outcomes.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(ItemOutcome::Failed(e.clone()));
                    }
                    break;
                }
            }
        }

        Ok(outcomes
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    ItemOutcome::Failed(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_sent",
                        "item was not sent",
                    ))
                })
            })
            .collect())
    }

    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut out: Vec<Option<Result<ChannelLevel, ChannelError>>> = vec![None; listings.len()];
        let mut pairs = Vec::new();
        let mut positions = Vec::new();
        for (i, listing) in listings.iter().enumerate() {
            match item_and_location(&listing.external) {
                Ok(pair) => {
                    pairs.push(pair);
                    positions.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if !pairs.is_empty() {
            let levels = self.read_resolved(&pairs).await?;
            for (i, level) in positions.into_iter().zip(levels) {
                out[i] = Some(level);
            }
        }
        Ok(out
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    Err(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_read",
                        "level was not read",
                    ))
                })
            })
            .collect())
    }

    fn webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        // §1.7: base64 HMAC-SHA256 of the raw body with the app's client secret.
        if self.config.webhook_secret.is_empty() {
            // Anyone can sign with an empty key.
            return Err(WebhookError::BadSignature);
        }
        let signature = headers
            .get("x-shopify-hmac-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(WebhookError::BadSignature)?;
        let mut mac = HmacSha256::new_from_slice(self.config.webhook_secret.as_bytes())
            .map_err(|_| WebhookError::BadSignature)?;
        mac.update(body);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(WebhookError::BadSignature);
        }

        let topic = headers
            .get("x-shopify-topic")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WebhookError::BadPayload("missing X-Shopify-Topic".into()))?;
        let payload: Value = serde_json::from_slice(body)
            .map_err(|e| WebhookError::BadPayload(format!("body is not JSON: {e}")))?;
        if !payload.is_object() {
            return Err(WebhookError::BadPayload("body is not a JSON object".into()));
        }
        match topic.as_str() {
            "orders/create" => order_created(&payload).map(WebhookAction::Order),
            "orders/cancelled" => {
                let order_id = required_id(&payload, "id")?;
                Ok(WebhookAction::Order(OrderChange {
                    dedup_key: format!("orders/cancelled:{order_id}"),
                    order_id,
                    kind: OrderChangeKind::Cancelled,
                    lines: Vec::new(),
                }))
            }
            "refunds/create" => refund_created(&payload, &topic),
            _ => Ok(WebhookAction::Ignored { topic }),
        }
    }
}

// ---------------------------------------------------------------------------
// Webhook payloads (REST shapes, §1.7)

fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => n
            .as_u64()
            .map(|v| v.to_string())
            .or_else(|| n.as_i64().map(|v| v.to_string())),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn required_id(object: &Value, key: &str) -> Result<String, WebhookError> {
    id_string(object.get(key)).ok_or_else(|| WebhookError::BadPayload(format!("missing {key}")))
}

fn required_qty(object: &Value, key: &str) -> Result<i64, WebhookError> {
    object
        .get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| WebhookError::BadPayload(format!("missing or non-integer {key}")))
}

/// The ids a line item offers for matching a listing; absent ones skipped.
fn line_keys(line_item: Option<&Value>) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let Some(line_item) = line_item else {
        return keys;
    };
    if let Some(variant) = id_string(line_item.get("variant_id")) {
        let gid = if variant.starts_with("gid://") {
            variant
        } else {
            format!("gid://shopify/ProductVariant/{variant}")
        };
        keys.push(("variant_id".to_string(), gid));
    }
    if let Some(sku) = line_item
        .get("sku")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        keys.push(("sku".to_string(), sku.to_string()));
    }
    keys
}

fn order_created(payload: &Value) -> Result<OrderChange, WebhookError> {
    let order_id = required_id(payload, "id")?;
    let items = payload
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| WebhookError::BadPayload("missing line_items".into()))?;
    let mut lines = Vec::with_capacity(items.len());
    for line in items {
        lines.push(OrderLineRef {
            line_id: required_id(line, "id")?,
            keys: line_keys(Some(line)),
            qty: required_qty(line, "quantity")?,
        });
    }
    Ok(OrderChange {
        dedup_key: format!("orders/create:{order_id}"),
        order_id,
        kind: OrderChangeKind::Placed,
        lines,
    })
}

/// `restock_type` values that put units back into stock: `return` and
/// `legacy_restock` (seen), `cancel` (§1.7, §3 item 7); `no_restock` does not.
fn restocks(refund: &Value, line: &Value) -> bool {
    match line.get("restock_type").and_then(Value::as_str) {
        Some(kind) => matches!(kind, "return" | "cancel" | "legacy_restock"),
        // Older payloads carry only the refund-wide `restock` flag.
        None => refund.get("restock").and_then(Value::as_bool) == Some(true),
    }
}

fn refund_created(payload: &Value, topic: &str) -> Result<WebhookAction, WebhookError> {
    let refund_id = required_id(payload, "id")?;
    let order_id = required_id(payload, "order_id")?;
    let refund_lines = match payload.get("refund_line_items") {
        Some(Value::Array(lines)) => lines.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => {
            return Err(WebhookError::BadPayload(
                "refund_line_items is not a list".into(),
            ))
        }
    };
    let mut lines = Vec::new();
    for line in refund_lines {
        if !restocks(payload, line) {
            continue;
        }
        let qty = required_qty(line, "quantity")?;
        if qty <= 0 {
            continue;
        }
        let line_item = line.get("line_item").filter(|l| l.is_object());
        let line_id = id_string(line.get("line_item_id"))
            .or_else(|| line_item.and_then(|l| id_string(l.get("id"))))
            .ok_or_else(|| WebhookError::BadPayload("refund line without line_item_id".into()))?;
        lines.push(OrderLineRef {
            line_id,
            keys: line_keys(line_item),
            qty,
        });
    }
    if lines.is_empty() {
        return Ok(WebhookAction::Ignored {
            topic: topic.to_string(),
        });
    }
    Ok(WebhookAction::Order(OrderChange {
        dedup_key: format!("refunds/create:{refund_id}"),
        order_id,
        kind: OrderChangeKind::Restocked,
        lines,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_year_month() {
        assert!(!uses_change_from("2025-01"));
        assert!(!uses_change_from("2025-10"));
        assert!(uses_change_from("2026-01"));
        assert!(uses_change_from("2026-04"));
        assert!(uses_change_from("unstable"));
        assert!(!uses_change_from("garbage"));
    }

    #[test]
    fn field_paths_name_the_quantity() {
        let ue = UserError::parse(&json!({
            "code": "COMPARE_QUANTITY_STALE",
            "field": ["input", "quantities", "3", "compareQuantity"],
            "message": "stale"
        }));
        assert_eq!(ue.position(), Some(3));
        assert!(ue.is_stale());
        let none = UserError::parse(
            &json!({"code": "INVALID_REASON", "field": ["input", "reason"], "message": "x"}),
        );
        assert_eq!(none.position(), None);
    }

    #[test]
    fn references_keep_their_scheme_or_become_gids() {
        assert!(has_scheme("stockd://ledger/42"));
        assert!(has_scheme("gid://stockd/Ledger/42"));
        assert!(!has_scheme("ledger-42"));
        assert!(!has_scheme("1:2"));
    }
}
