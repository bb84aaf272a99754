//! WooCommerce REST API v3 connector.
//!
//! Each behaviour cites the WooCommerce REST API documentation it follows.
//!
//! - Pushes are absolute: `POST /products/batch` for simple products and
//!   `POST /products/{parent}/variations/batch` per parent, at most 100
//!   updates per call (<https://woocommerce.github.io/woocommerce-rest-api-docs/#batch-update-products>). WooCommerce has no compare-and-set (<https://woocommerce.github.io/woocommerce-rest-api-docs/#product-properties>), so
//!   `PushItem::believed` is not used.
//! - Reads use the collection endpoints with `include=` and follow the
//!   pagination headers (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>).
//! - The whole site is read back by paging the product and variation
//!   collections (`bulk.rs`, <https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-products>).
//! - Auth: HTTP Basic over `https://`, OAuth 1.0a one-legged (HMAC-SHA256,
//!   parameters in the query string) over plain `http://` (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>).
//! - Webhooks: `X-WC-Webhook-Signature` over the exact body, the unsigned
//!   creation ping, and `order.created` / `order.updated` (<https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>); refunds
//!   named by an `order.updated` are read from the refunds endpoint
//!   (`refunds.rs`).

mod bulk;
mod orders;
mod refunds;

use crate::encoding::{encode_pairs, percent_encode};
use crate::ratelimit::Limiter;
use crate::{
    constant_time_eq, Availability, BulkProgress, BulkRead, ChannelError, ChannelLevel, Clock,
    Connector, ErrorClass, External, FollowUp, HttpRequest, HttpResponse, ItemOutcome, LevelQuery,
    OrderChange, OrderChangeKind, OrderLineRef, OrderPoll, PushItem, Transport, WebhookAction,
    WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Path prefix of the REST API under the site URL (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>).
pub const API_PREFIX: &str = "/wp-json/wc/v3";
/// create + update + delete per batch call (<https://woocommerce.github.io/woocommerce-rest-api-docs/#batch-update-products>).
pub const MAX_BATCH: usize = 100;
/// `include=` ids per read request; matches `per_page=100`.
const READ_CHUNK: usize = 100;
const BODY_EXCERPT: usize = 2048;
/// Guard against a server whose pagination headers never end.
const MAX_PAGES: u32 = 1000;
/// From this many listings a reconciliation pages through the collections
/// (100 a page) rather than asking for its listings by id (`include=`, also
/// 100 a request, but one request per parent for variations).
pub const BULK_READ_FROM: usize = 200;

type HmacSha256 = Hmac<Sha256>;

/// Connection settings for one WooCommerce site.
#[derive(Debug, Clone)]
pub struct Config {
    /// e.g. `https://shop.example`, without a trailing slash.
    pub site_url: String,
    /// `ck_…`
    pub consumer_key: String,
    /// `cs_…`
    pub consumer_secret: String,
    /// The secret given when the webhook was created.
    pub webhook_secret: String,
    /// `(burst, per second)`. WooCommerce itself documents no limit; hosts
    /// may impose one (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>). `None`: paced only by 429 `Retry-After`.
    pub rate_limit: Option<(f64, f64)>,
    /// How often the orders are read back (`GET /orders` by modification
    /// date), so an order whose webhook was lost still reaches the ledger;
    /// `None`: webhooks only.
    pub order_poll_interval: Option<Duration>,
    /// How far the first poll after start looks back.
    pub order_lookback: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            site_url: String::new(),
            consumer_key: String::new(),
            consumer_secret: String::new(),
            webhook_secret: String::new(),
            rate_limit: None,
            order_poll_interval: None,
            order_lookback: Duration::from_secs(3600),
        }
    }
}

/// The WooCommerce connector.
pub struct WooCommerce {
    config: Config,
    transport: Arc<dyn Transport>,
    limiter: Limiter,
    /// Items per batch call; lowered when the site answers 413 (the limit is
    /// filterable per site, <https://woocommerce.github.io/woocommerce-rest-api-docs/#batch-update-products>).
    batch_limit: AtomicUsize,
    nonce_seq: AtomicU64,
    clock: Clock,
}

impl std::fmt::Debug for WooCommerce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WooCommerce")
            .field("site_url", &self.config.site_url)
            .field("batch_limit", &self.batch_limit.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where a listing lives on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Product(u64),
    Variation { parent: u64, id: u64 },
}

impl Target {
    fn parent(self) -> Option<u64> {
        match self {
            Target::Product(_) => None,
            Target::Variation { parent, .. } => Some(parent),
        }
    }

    fn id(self) -> u64 {
        match self {
            Target::Product(id) => id,
            Target::Variation { id, .. } => id,
        }
    }
}

/// Reads an id that may be a JSON number or a numeric string.
fn id_value(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

fn parse_external(external: &External) -> Result<Target, ChannelError> {
    let missing = |what: &str| {
        ChannelError::new(
            ErrorClass::Permanent,
            "missing_external_id",
            format!("listing has no valid WooCommerce {what}"),
        )
    };
    let product = id_value(external.get("product_id"))
        .filter(|&id| id > 0)
        .ok_or_else(|| missing("product_id"))?;
    match external.get("variation_id") {
        None | Some(Value::Null) => Ok(Target::Product(product)),
        Some(v) => match id_value(Some(v)) {
            // Orders use 0 for "no variation" (<https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties>); accept the same here.
            Some(0) => Ok(Target::Product(product)),
            Some(id) => Ok(Target::Variation {
                parent: product,
                id,
            }),
            None => Err(missing("variation_id")),
        },
    }
}

// ---------------------------------------------------------------------------
// OAuth 1.0a (one-legged), as WooCommerce verifies it.

/// The OAuth signature base string as WooCommerce's
/// `WC_REST_Authentication::check_oauth_signature` builds it (RFC 5849
/// section 3.4.1 without a token):
/// `METHOD & enc(base_url) & enc(k)=enc(v) pairs, sorted by raw key
/// (strcmp), each pair encoded again and joined with %26`.
///
/// `base_url` is scheme, host, port and path without the query: WooCommerce
/// rebuilds it from the site's home URL plus the request path, so it is the
/// configured site URL followed by the path. `params` are all query
/// parameters except `oauth_signature` (a JSON body is not part of it: PHP
/// only reads form bodies into `$_POST`).
pub fn oauth_base_string(method: &str, base_url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // PHP arrays cannot hold a key twice, so sorting by key alone is total.
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let pairs: Vec<String> = sorted
        .iter()
        .map(|(k, v)| percent_encode(&format!("{}={}", percent_encode(k), percent_encode(v))))
        .collect();
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(base_url),
        pairs.join("%26")
    )
}

/// base64(HMAC-SHA256(consumer_secret + "&", base_string)): the key is the
/// raw consumer secret and an empty token secret, as WooCommerce computes it.
pub fn oauth_signature(consumer_secret: &str, base_string: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(format!("{consumer_secret}&").as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs a request: returns `query` followed by the OAuth parameters and
/// `oauth_signature`, ready to be percent-encoded into the URL. Pure: the
/// clock and the nonce are inputs.
pub fn oauth_sign(
    method: &str,
    base_url: &str,
    query: &[(String, String)],
    consumer_key: &str,
    consumer_secret: &str,
    timestamp: u64,
    nonce: &str,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = query.to_vec();
    params.push(("oauth_consumer_key".into(), consumer_key.into()));
    params.push(("oauth_nonce".into(), nonce.into()));
    params.push(("oauth_signature_method".into(), "HMAC-SHA256".into()));
    params.push(("oauth_timestamp".into(), timestamp.to_string()));
    let base = oauth_base_string(method, base_url, &params);
    params.push((
        "oauth_signature".into(),
        oauth_signature(consumer_secret, &base),
    ));
    params
}

/// base64(HMAC-SHA256(secret, body)) as in `X-WC-Webhook-Signature` (<https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------
// Errors.

fn json_status(value: Option<&Value>) -> Option<u16> {
    match value? {
        Value::Number(n) => n.as_u64().and_then(|s| u16::try_from(s).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn class_for(status: u16, message: &str) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited,
        408 | 500..=599 => ErrorClass::Retryable,
        // A replayed nonce is cured by the fresh nonce of the next attempt
        // (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication> lists the message).
        401 if message.contains("nonce has already been used") => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies a non-2xx response, reading the `{code, message, data:{status}}`
/// envelope (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>).
fn error_from_response(response: &HttpResponse) -> ChannelError {
    let envelope: Option<Value> = serde_json::from_slice(&response.body).ok();
    let code = envelope
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http_{}", response.status));
    let message = envelope
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    let class = class_for(response.status, &message);
    let mut error = ChannelError::new(class, code, message);
    error.status = Some(response.status);
    error.body = Some(response.body_excerpt(BODY_EXCERPT));
    if class == ErrorClass::RateLimited {
        error.retry_after = response.retry_after();
    }
    error
}

/// A per-item `{"id", "error": {code, message, data: {status}}}` inside a
/// 200 batch answer (<https://woocommerce.github.io/woocommerce-rest-api-docs/#batch-update-products>).
fn item_error(error: &Value) -> ChannelError {
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("woocommerce_batch_item_error")
        .to_owned();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("batch item failed")
        .to_owned();
    let status = json_status(error.get("data").and_then(|d| d.get("status")));
    // Without a status the item was refused by validation (invalid id,
    // invalid value): retrying the same values cannot help.
    let class = status.map_or(ErrorClass::Permanent, |s| class_for(s, &message));
    let mut out = ChannelError::new(class, code, message);
    out.status = status;
    out.body = Some(truncate(&error.to_string(), BODY_EXCERPT));
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn invalid_response(response: &HttpResponse, what: &str) -> ChannelError {
    // Absolute values make a resend harmless, so an unreadable answer is
    // retried rather than dead-lettered.
    let mut error = ChannelError::new(ErrorClass::Retryable, "invalid_response", what.to_owned());
    error.status = Some(response.status);
    error.body = Some(response.body_excerpt(BODY_EXCERPT));
    error
}

/// The "N" of "Unable to accept more than N items for this request." (<https://woocommerce.github.io/woocommerce-rest-api-docs/#batch-update-products>).
fn accepted_items(error: &ChannelError) -> Option<usize> {
    let rest = error.message.split("more than ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------
// Push payload.

/// The stock fields of one batch update (<https://woocommerce.github.io/woocommerce-rest-api-docs/#product-properties>). Stock is managed at the
/// product/variation level; `stock_status` is sent as well because the
/// automatic status from the quantity is unconfirmed core behaviour (<https://woocommerce.github.io/woocommerce-rest-api-docs/#product-properties>) and is the only field written when the site does not manage stock
/// (no managed stock). A backorder listing gets `backorders: "notify"` (sellable and
/// shown as "on backorder" once the quantity is ≤ 0); every other state
/// `backorders: "no"`.
fn update_entry(id: u64, item: &PushItem) -> Value {
    let quantity = item.quantity.max(0);
    let backorder = item.availability == Availability::Backorder;
    let stock_status = if quantity > 0 {
        "instock"
    } else if backorder {
        "onbackorder"
    } else {
        "outofstock"
    };
    json!({
        "id": id,
        "manage_stock": true,
        "stock_quantity": quantity,
        "backorders": if backorder { "notify" } else { "no" },
        "stock_status": stock_status,
    })
}

fn quantity_value(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.floor() as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f.floor() as i64),
        _ => None,
    }
}

/// One batch call's worth of items.
#[derive(Debug, Clone)]
struct Chunk {
    parent: Option<u64>,
    /// `(index into the push, channel id)`.
    entries: Vec<(usize, u64)>,
}

enum BatchAnswer {
    /// One outcome per entry, in the chunk's order.
    Done(Vec<ItemOutcome>),
    /// 413: too many items for this site.
    TooLarge(ChannelError),
    /// The whole call failed; nothing in it was applied.
    Failed(ChannelError),
}

fn split_into(chunk: Chunk, size: usize) -> Vec<Chunk> {
    let size = size.max(1);
    chunk
        .entries
        .chunks(size)
        .map(|entries| Chunk {
            parent: chunk.parent,
            entries: entries.to_vec(),
        })
        .collect()
}

// ---------------------------------------------------------------------------

impl WooCommerce {
    pub fn new(config: Config, transport: Arc<dyn Transport>) -> WooCommerce {
        WooCommerce::with_clock(config, transport, Arc::new(chrono::Utc::now))
    }

    /// As [`WooCommerce::new`], with the wall clock that order polls use.
    pub fn with_clock(config: Config, transport: Arc<dyn Transport>, clock: Clock) -> WooCommerce {
        let limiter = match config.rate_limit {
            Some((burst, per_sec)) if burst > 0.0 && per_sec > 0.0 => Limiter::new(burst, per_sec),
            // Unpaced: a bucket too large to matter, still able to honour
            // `Retry-After` through `block_for`.
            _ => Limiter::new(1e9, 1e9),
        };
        WooCommerce {
            config,
            transport,
            limiter,
            batch_limit: AtomicUsize::new(MAX_BATCH),
            nonce_seq: AtomicU64::new(0),
            clock,
        }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    fn site(&self) -> &str {
        self.config.site_url.trim_end_matches('/')
    }

    fn is_https(&self) -> bool {
        self.site()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// 32 alphanumeric characters, unique per request (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>: a reused nonce
    /// is refused): a per-connector sequence number mixed with the clock, the
    /// process and this connector's address.
    fn next_nonce(&self, timestamp_nanos: u128) -> String {
        let seq = self.nonce_seq.fetch_add(1, Ordering::Relaxed);
        let mut hasher = Sha256::new();
        hasher.update(seq.to_le_bytes());
        hasher.update(timestamp_nanos.to_le_bytes());
        hasher.update(std::process::id().to_le_bytes());
        hasher.update((self as *const WooCommerce as usize).to_le_bytes());
        let digest = hasher.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn build_request(
        &self,
        method: http::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> HttpRequest {
        let base_url = format!("{}{}{}", self.site(), API_PREFIX, path);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        if body.is_some() {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        let params = if self.is_https() {
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                self.config.consumer_key, self.config.consumer_secret
            ));
            if let Ok(value) = http::HeaderValue::from_str(&format!("Basic {credentials}")) {
                headers.insert(http::header::AUTHORIZATION, value);
            }
            query.to_vec()
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let nonce = self.next_nonce(now.as_nanos());
            oauth_sign(
                method.as_str(),
                &base_url,
                query,
                &self.config.consumer_key,
                &self.config.consumer_secret,
                now.as_secs(),
                &nonce,
            )
        };
        let url = if params.is_empty() {
            base_url
        } else {
            format!("{base_url}?{}", encode_pairs(&params))
        };
        HttpRequest {
            method,
            url,
            headers,
            body: body.unwrap_or_default(),
        }
    }

    /// Waits for the limiter, signs (so OAuth timestamps are fresh) and sends.
    /// `Ok` for any response; 429 blocks the limiter for `Retry-After`.
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ChannelError> {
        self.limiter.acquire(1.0).await;
        let request = self.build_request(method, path, query, body);
        let response = self.transport.send(request).await?;
        if response.status == 429 {
            if let Some(after) = response.retry_after() {
                self.limiter.block_for(after);
            }
        }
        Ok(response)
    }

    async fn send_batch(&self, chunk: &Chunk, items: &[PushItem]) -> BatchAnswer {
        let path = match chunk.parent {
            None => "/products/batch".to_owned(),
            Some(parent) => format!("/products/{parent}/variations/batch"),
        };
        let updates: Vec<Value> = chunk
            .entries
            .iter()
            .map(|&(index, id)| update_entry(id, &items[index]))
            .collect();
        let body = json!({ "update": updates }).to_string().into_bytes();
        let response = match self.send(http::Method::POST, &path, &[], Some(body)).await {
            Ok(response) => response,
            Err(error) => return BatchAnswer::Failed(error),
        };
        if !(200..300).contains(&response.status) {
            let error = error_from_response(&response);
            if response.status == 413 {
                return BatchAnswer::TooLarge(error);
            }
            return BatchAnswer::Failed(error);
        }
        let parsed: Option<Vec<Value>> = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v.get("update").and_then(Value::as_array).cloned());
        let Some(results) = parsed else {
            return BatchAnswer::Failed(invalid_response(
                &response,
                "batch answer has no `update` array",
            ));
        };
        // WooCommerce answers in request order; fall back to matching by id
        // when the answer does not line up.
        let aligned = results.len() == chunk.entries.len()
            && results
                .iter()
                .zip(&chunk.entries)
                .all(|(r, &(_, id))| id_value(r.get("id")) == Some(id));
        let mut by_id: HashMap<u64, &Value> = HashMap::new();
        if !aligned {
            for r in &results {
                if let Some(id) = id_value(r.get("id")) {
                    by_id.entry(id).or_insert(r);
                }
            }
        }
        let outcomes = chunk
            .entries
            .iter()
            .enumerate()
            .map(|(pos, &(index, id))| {
                let result = if aligned {
                    results.get(pos)
                } else {
                    by_id.get(&id).copied()
                };
                match result {
                    None => ItemOutcome::Failed(invalid_response(
                        &response,
                        &format!("batch answer has no result for id {id}"),
                    )),
                    Some(r) => match r.get("error") {
                        Some(error) if !error.is_null() => ItemOutcome::Failed(item_error(error)),
                        _ => ItemOutcome::Applied {
                            quantity: quantity_value(r.get("stock_quantity"))
                                .unwrap_or(items[index].quantity.max(0)),
                        },
                    },
                }
            })
            .collect();
        BatchAnswer::Done(outcomes)
    }

    /// `GET {path}?include=…&per_page=100&page=N` until the last page;
    /// returns the resources by id.
    async fn fetch_included(
        &self,
        path: &str,
        ids: &[u64],
    ) -> Result<HashMap<u64, Value>, ChannelError> {
        let include = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let mut found = HashMap::new();
        let mut page: u32 = 1;
        loop {
            let query = vec![
                ("include".to_owned(), include.clone()),
                ("per_page".to_owned(), READ_CHUNK.to_string()),
                ("page".to_owned(), page.to_string()),
            ];
            let response = self.send(http::Method::GET, path, &query, None).await?;
            if !(200..300).contains(&response.status) {
                return Err(error_from_response(&response));
            }
            let Ok(Value::Array(resources)) = serde_json::from_slice::<Value>(&response.body)
            else {
                return Err(invalid_response(&response, "list answer is not an array"));
            };
            for resource in resources {
                if let Some(id) = id_value(resource.get("id")) {
                    found.insert(id, resource);
                }
            }
            if page >= MAX_PAGES || !has_next_page(&response, page) {
                return Ok(found);
            }
            page += 1;
        }
    }
}

/// `X-WP-TotalPages` when present, else a `Link` with `rel="next"` (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>).
fn has_next_page(response: &HttpResponse, page: u32) -> bool {
    let total = response
        .headers
        .get("x-wp-totalpages")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    if let Some(total) = total {
        return page < total;
    }
    response
        .headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|link| {
            link.split(';').skip(1).any(|param| {
                let param = param.trim().replace(' ', "");
                param.eq_ignore_ascii_case("rel=\"next\"") || param.eq_ignore_ascii_case("rel=next")
            })
        })
}

fn level_of(resource: &Value) -> ChannelLevel {
    let availability = match resource.get("stock_status").and_then(Value::as_str) {
        Some("instock") => Some(Availability::InStock),
        Some("outofstock") => Some(Availability::OutOfStock),
        Some("onbackorder") => Some(Availability::Backorder),
        _ => None,
    };
    // `stock_quantity` is null when stock is not managed (<https://woocommerce.github.io/woocommerce-rest-api-docs/#product-properties>).
    ChannelLevel {
        quantity: quantity_value(resource.get("stock_quantity")),
        availability,
    }
}

fn not_found(target: Target, cause: Option<&ChannelError>) -> ChannelError {
    let what = match target {
        Target::Product(id) => format!("product {id}"),
        Target::Variation { parent, id } => format!("variation {id} of product {parent}"),
    };
    let mut error = ChannelError::new(
        ErrorClass::Permanent,
        "not_found",
        format!("{what} not found"),
    );
    if let Some(cause) = cause {
        error.message = format!("{what} not found: {} ({})", cause.message, cause.code);
        error.status = cause.status;
        error.body = cause.body.clone();
    }
    error
}

// ---------------------------------------------------------------------------
// Webhooks (<https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>).

/// The creation ping: the form body `webhook_id=<id>`.
fn is_ping(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim();
    let mut saw_id = false;
    for pair in text.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "webhook_id" {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            saw_id = true;
        }
    }
    saw_id
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn order_lines(order: &Map<String, Value>) -> Result<Vec<OrderLineRef>, WebhookError> {
    let Some(items) = order.get("line_items") else {
        return Ok(Vec::new());
    };
    let items = items
        .as_array()
        .ok_or_else(|| WebhookError::BadPayload("line_items is not an array".into()))?;
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let line_id = id_string(item.get("id"))
            .ok_or_else(|| WebhookError::BadPayload("line item without id".into()))?;
        let qty = quantity_value(item.get("quantity")).ok_or_else(|| {
            WebhookError::BadPayload(format!("line item {line_id} without quantity"))
        })?;
        let mut keys = Vec::new();
        // `variation_id` is 0 when there is none; `product_id` is then the
        // product itself, else the variation's parent (<https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties>).
        if let Some(v) = id_value(item.get("variation_id")).filter(|&v| v != 0) {
            keys.push(("variation_id".to_owned(), v.to_string()));
        }
        if let Some(p) = id_value(item.get("product_id")).filter(|&p| p != 0) {
            keys.push(("product_id".to_owned(), p.to_string()));
        }
        if let Some(sku) = item.get("sku").and_then(Value::as_str) {
            if !sku.is_empty() {
                keys.push(("sku".to_owned(), sku.to_owned()));
            }
        }
        if qty <= 0 || keys.is_empty() {
            // Nothing a listing could match or reserve.
            continue;
        }
        lines.push(OrderLineRef { line_id, keys, qty });
    }
    Ok(lines)
}

/// The change an order's status asks for
/// (<https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties>),
/// or `None` for a status that holds or releases nothing.
fn status_change(order: &Map<String, Value>) -> Result<Option<OrderChange>, WebhookError> {
    let order_id = id_string(order.get("id"))
        .ok_or_else(|| WebhookError::BadPayload("order without id".into()))?;
    let status = order
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::BadPayload(format!("order {order_id} without status")))?;
    let status = status.strip_prefix("wc-").unwrap_or(status);
    // Statuses per <https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties>. Core reduces stock for processing and on-hold;
    // `pending` (awaiting payment) holds none and `completed` follows a
    // status that already reserved, so both are ignored.
    let kind = match status {
        "processing" | "on-hold" => OrderChangeKind::Placed,
        "cancelled" | "refunded" | "failed" => OrderChangeKind::Cancelled,
        _ => return Ok(None),
    };
    let lines = match kind {
        OrderChangeKind::Placed => order_lines(order)?,
        // Empty = the whole order.
        _ => Vec::new(),
    };
    Ok(Some(OrderChange {
        // Delivery ids can collide within a second (<https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>): deduplicate by
        // order and status instead.
        dedup_key: format!("{order_id}:{status}"),
        order_id,
        kind,
        lines,
    }))
}

fn order_action(topic: &str, body: &[u8]) -> Result<WebhookAction, WebhookError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::BadPayload(format!("invalid JSON: {e}")))?;
    let order = value
        .as_object()
        .ok_or_else(|| WebhookError::BadPayload("order payload is not an object".into()))?;
    let change = status_change(order)?;
    // `order.updated` fires on refunds (`woocommerce_order_refunded` in the
    // topic hooks of
    // <https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/class-wc-webhook.php>)
    // but carries their ids only: the lines are read from the refunds
    // endpoint.
    if refunds::has_refunds(order) {
        let order_id = id_string(order.get("id"))
            .ok_or_else(|| WebhookError::BadPayload("order without id".into()))?;
        return Ok(WebhookAction::FollowUp(FollowUp {
            order_id,
            notification: value,
        }));
    }
    Ok(match change {
        Some(change) => WebhookAction::Order(change),
        None => WebhookAction::Ignored {
            topic: topic.to_owned(),
        },
    })
}

#[async_trait]
impl Connector for WooCommerce {
    fn kind(&self) -> &'static str {
        "woocommerce"
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        // Items that failed because their whole call failed, with that error.
        let mut call_failures: Vec<Option<ChannelError>> = vec![None; items.len()];

        // Group by endpoint (simple products, then each parent), in order of
        // first appearance.
        let mut groups: Vec<Chunk> = Vec::new();
        let mut group_of: HashMap<Option<u64>, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            match parse_external(&item.external) {
                Ok(target) => {
                    let g = *group_of.entry(target.parent()).or_insert_with(|| {
                        groups.push(Chunk {
                            parent: target.parent(),
                            entries: Vec::new(),
                        });
                        groups.len() - 1
                    });
                    groups[g].entries.push((index, target.id()));
                }
                Err(error) => outcomes[index] = Some(ItemOutcome::Failed(error)),
            }
        }
        let mut queue: VecDeque<Chunk> = groups.into();

        // After a 429 or 401 the remaining calls would fail the same way.
        let mut halted: Option<ChannelError> = None;
        while let Some(chunk) = queue.pop_front() {
            if let Some(error) = &halted {
                for &(index, _) in &chunk.entries {
                    outcomes[index] = Some(ItemOutcome::Failed(error.clone()));
                    call_failures[index] = Some(error.clone());
                }
                continue;
            }
            let limit = self.batch_limit.load(Ordering::Relaxed).max(1);
            if chunk.entries.len() > limit {
                for piece in split_into(chunk, limit).into_iter().rev() {
                    queue.push_front(piece);
                }
                continue;
            }
            match self.send_batch(&chunk, items).await {
                BatchAnswer::Done(results) => {
                    for (&(index, _), outcome) in chunk.entries.iter().zip(results) {
                        outcomes[index] = Some(outcome);
                    }
                }
                BatchAnswer::TooLarge(error) => {
                    let len = chunk.entries.len();
                    if len <= 1 {
                        for &(index, _) in &chunk.entries {
                            outcomes[index] = Some(ItemOutcome::Failed(error.clone()));
                            call_failures[index] = Some(error.clone());
                        }
                        continue;
                    }
                    // Halve (or use the limit the site states); each retry
                    // is strictly smaller, so this ends.
                    let size = accepted_items(&error)
                        .filter(|&n| n >= 1 && n < len)
                        .unwrap_or(len.div_ceil(2).min(len - 1));
                    self.batch_limit.fetch_min(size, Ordering::Relaxed);
                    for piece in split_into(chunk, size).into_iter().rev() {
                        queue.push_front(piece);
                    }
                }
                BatchAnswer::Failed(error) => {
                    for &(index, _) in &chunk.entries {
                        outcomes[index] = Some(ItemOutcome::Failed(error.clone()));
                        call_failures[index] = Some(error.clone());
                    }
                    if error.class == ErrorClass::RateLimited || error.status == Some(401) {
                        halted = Some(error);
                    }
                }
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

    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut results: Vec<Option<Result<ChannelLevel, ChannelError>>> =
            vec![None; listings.len()];
        let mut groups: Vec<(Option<u64>, Vec<(usize, Target)>)> = Vec::new();
        let mut group_of: HashMap<Option<u64>, usize> = HashMap::new();
        for (index, listing) in listings.iter().enumerate() {
            match parse_external(&listing.external) {
                Ok(target) => {
                    let g = *group_of.entry(target.parent()).or_insert_with(|| {
                        groups.push((target.parent(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push((index, target));
                }
                Err(error) => results[index] = Some(Err(error)),
            }
        }

        for (parent, entries) in groups {
            let path = match parent {
                None => "/products".to_owned(),
                Some(parent) => format!("/products/{parent}/variations"),
            };
            let mut ids: Vec<u64> = entries.iter().map(|(_, t)| t.id()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut found: HashMap<u64, Value> = HashMap::new();
            let mut missing_parent: Option<ChannelError> = None;
            for chunk in ids.chunks(READ_CHUNK) {
                match self.fetch_included(&path, chunk).await {
                    Ok(resources) => found.extend(resources),
                    // An unknown parent: its variations do not exist.
                    Err(error) if parent.is_some() && error.status == Some(404) => {
                        missing_parent = Some(error);
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
            for (index, target) in entries {
                results[index] = Some(match found.get(&target.id()) {
                    Some(resource) => Ok(level_of(resource)),
                    None => Err(not_found(target, missing_parent.as_ref())),
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_read",
                        "listing was not read",
                    ))
                })
            })
            .collect())
    }

    fn bulk_read_from(&self) -> Option<usize> {
        Some(BULK_READ_FROM)
    }

    fn listing_key(&self, external: &External) -> Option<String> {
        parse_external(external).ok().map(bulk::key_of)
    }

    async fn read_all(&self, progress: BulkProgress<'_>) -> Result<BulkRead, ChannelError> {
        self.page_all(progress).await
    }

    async fn follow_up(&self, follow_up: &FollowUp) -> Result<Vec<OrderChange>, ChannelError> {
        refunds::order_changes(self, follow_up).await
    }

    fn polls_orders(&self) -> bool {
        self.config.order_poll_interval.is_some()
    }

    /// The orders modified since the cursor (`orders.rs`): what a lost
    /// webhook would have said.
    async fn poll_orders(&self, cursor: Option<&str>) -> Result<OrderPoll, ChannelError> {
        match self.config.order_poll_interval {
            Some(interval) => self.poll(cursor, interval).await,
            None => Ok(crate::poll::idle(cursor)),
        }
    }

    fn webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        let signature = header_str(headers, "x-wc-webhook-signature");
        // The creation ping carries no signature headers (<https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>); it applies
        // nothing, so it is answered without one.
        if signature.is_none() && is_ping(body) {
            return Ok(WebhookAction::Ping);
        }
        let Some(signature) = signature else {
            return Err(WebhookError::BadSignature);
        };
        // An empty secret would let anyone sign; WooCommerce never uses one
        // (it generates a default, <https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>).
        if self.config.webhook_secret.is_empty() {
            return Err(WebhookError::BadSignature);
        }
        let expected = webhook_signature(&self.config.webhook_secret, body);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(WebhookError::BadSignature);
        }
        if is_ping(body) {
            return Ok(WebhookAction::Ping);
        }
        let topic = header_str(headers, "x-wc-webhook-topic")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WebhookError::BadPayload("missing X-WC-Webhook-Topic".into()))?;
        match topic {
            "order.created" | "order.updated" => order_action(topic, body),
            _ => Ok(WebhookAction::Ignored {
                topic: topic.to_owned(),
            }),
        }
    }
}
