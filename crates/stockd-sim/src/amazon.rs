//! Amazon Selling Partner API simulator (note §2, checklist §2.8).
//!
//! Emulated: LWA `POST /auth/o2/token` (refresh-token grant, expiring access tokens) and the
//! `x-amz-access-token` header on every call (§2.1); per-operation token buckets with the
//! published defaults, 429 `QuotaExceeded`, `x-amzn-RequestId` and `x-amzn-RateLimit-Limit`
//! (§2.2, §2.3); Listings Items 2021-08-01 `patchListingsItem` (body validation, ACCEPTED applied
//! after a configurable lag, 200 INVALID with issues, VALIDATION_PREVIEW), `getListingsItem` and
//! `searchListingsItems` with `includedData` (§2.4); Feeds 2021-06-30 with `JSON_LISTINGS_FEED`
//! documents uploaded to and downloaded from this simulator, IN_QUEUE → IN_PROGRESS → DONE and
//! the v2 processing report (§2.5); Orders v2026-01-01 `searchOrders`/`getOrder` (§2.6); and
//! ORDER_CHANGE notifications POSTed with stockd's `X-Stockd-Signature` (§2.7).

// Early returns carry the finished error `Response`; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// One token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

/// The published usage plans (note §2.3), keyed by operationId.
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
    /// Access token lifetime (§2.1: one hour).
    pub token_ttl_secs: u64,
    /// Lag between an ACCEPTED `patchListingsItem` and the quantity being visible.
    pub listing_delay: Duration,
    /// Time from `createFeed` to DONE (the first half IN_QUEUE, the second IN_PROGRESS).
    pub feed_delay: Duration,
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
    /// `searchOrders` pagination tokens expire after 24 h (§2.6).
    pub pagination_token_ttl: Duration,
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
        }
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Amazon {
        state: Mutex::new(AmzState::default()),
        config,
        core,
        base_url: format!("http://{addr}"),
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = Router::new()
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
        .route("/orders/2026-01-01/orders", get(search_orders))
        .route("/orders/2026-01-01/orders/{id}", get(get_order))
        .route("/_sim/amazon/tokens", get(sim_tokens))
        .route("/_sim/amazon/feed_outcomes", post(sim_feed_outcomes))
        .route("/_sim/amazon/orders/{id}/ship", post(sim_ship))
        .with_state(sim)
        .merge(sim_router(backend.clone()))
        .fallback(|| async {
            amz_error(StatusCode::NOT_FOUND, "NotFound", "Resource not found.", "")
        });
    serve(router, listener, backend)
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, PartialEq)]
struct Availability {
    quantity: i64,
    lead_time: Option<i64>,
    restock_date: Option<String>,
}

#[derive(Debug, Clone)]
struct Listing {
    sku: String,
    asin: String,
    product_type: String,
    /// The `DEFAULT` (merchant-fulfilled) `fulfillment_availability` entry.
    fa: Option<Availability>,
    /// Other top-level attributes, stored as sent.
    attrs: Map<String, Value>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    applied_seq: u64,
}

impl Listing {
    fn quantity(&self) -> i64 {
        self.fa.as_ref().map(|f| f.quantity).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedStatus {
    InQueue,
    InProgress,
    Done,
    Cancelled,
    Fatal,
}

impl FeedStatus {
    fn as_str(self) -> &'static str {
        match self {
            FeedStatus::InQueue => "IN_QUEUE",
            FeedStatus::InProgress => "IN_PROGRESS",
            FeedStatus::Done => "DONE",
            FeedStatus::Cancelled => "CANCELLED",
            FeedStatus::Fatal => "FATAL",
        }
    }
}

struct Feed {
    id: String,
    feed_type: String,
    marketplace_ids: Vec<Value>,
    input_doc: String,
    created: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
    status: FeedStatus,
    result_doc: Option<String>,
}

struct Document {
    content_type: String,
    body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct OrderItem {
    id: String,
    sku: String,
    asin: String,
    quantity: i64,
}

#[derive(Debug, Clone)]
struct Order {
    id: String,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    /// A v2026 `FulfillmentStatus`.
    status: &'static str,
    items: Vec<OrderItem>,
    refunded: bool,
}

struct PageToken {
    key: String,
    offset: usize,
    issued: Instant,
}

#[derive(Default)]
struct AmzState {
    listings: BTreeMap<String, Listing>,
    feeds: BTreeMap<String, Feed>,
    docs: HashMap<String, Document>,
    orders: Vec<Order>,
    tokens: HashMap<String, Instant>,
    tokens_issued: u64,
    buckets: HashMap<String, (f64, Instant)>,
    seq: u64,
    next_feed: u64,
    feed_outcomes: VecDeque<FeedStatus>,
    page_tokens: HashMap<String, PageToken>,
}

struct Amazon {
    config: Config,
    core: Arc<SimCore>,
    state: Mutex<AmzState>,
    base_url: String,
}

type Sim = Arc<Amazon>;

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// `ErrorList` (§2.2).
fn amz_error(status: StatusCode, code: &str, message: &str, details: &str) -> Response {
    json_response(
        status,
        &json!({"errors": [{"code": code, "message": message, "details": details}]}),
    )
}

/// The rate value as `x-amzn-RateLimit-Limit` carries it (format UNCONFIRMED, §2.3: "5.0").
fn rate_header(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate}")
    }
}

fn quota_exceeded() -> Response {
    amz_error(
        StatusCode::TOO_MANY_REQUESTS,
        "QuotaExceeded",
        "You exceeded your quota for the requested resource.",
        "",
    )
}

fn bad_listing_request(details: &str) -> Response {
    // Listings model sandbox: BAD_REQUEST / "Invalid input"; the details name the problem.
    amz_error(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        "Invalid input",
        details,
    )
}

fn invalid_input(details: &str) -> Response {
    // Orders/Feeds model sandbox: InvalidInput.
    amz_error(
        StatusCode::BAD_REQUEST,
        "InvalidInput",
        "Invalid Input",
        details,
    )
}

fn denied(details: &str) -> Response {
    // 403 per the models; the code is UNCONFIRMED (§2.8 item 1: `Unauthorized` seen in the wild).
    amz_error(
        StatusCode::FORBIDDEN,
        "Unauthorized",
        "Access to requested resource is denied.",
        details,
    )
}

struct Query(Vec<(String, String)>);

impl Query {
    fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Array parameters: comma-separated and/or repeated keys are both accepted.
    fn list(&self, key: &str) -> Option<Vec<String>> {
        let vals: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| k == key || *k == format!("{key}[]"))
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect();
        if self
            .0
            .iter()
            .any(|(k, _)| k == key || *k == format!("{key}[]"))
        {
            Some(vals)
        } else {
            None
        }
    }
}

impl Amazon {
    /// Adds `x-amzn-RequestId` everywhere and `x-amzn-RateLimit-Limit` on 200/201/202/400/404
    /// (the statuses whose model responses declare it, §2.2).
    fn finish(&self, op: &str, mut r: Response) -> Response {
        let id = self.core.uuid();
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert("x-amzn-RequestId", v);
        }
        let s = r.status().as_u16();
        if matches!(s, 200 | 201 | 202 | 400 | 404) {
            if let Some(l) = self.config.rate_limits.get(op) {
                if let Ok(v) = HeaderValue::from_str(&rate_header(l.rate)) {
                    r.headers_mut().insert("x-amzn-RateLimit-Limit", v);
                }
            }
        }
        r
    }

    fn injected(&self, inj: Injected) -> Response {
        match inj {
            // Bodies of injected 5xx are UNCONFIRMED; the ErrorList shape is kept.
            Injected::Outage => amz_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Service temporarily unavailable.",
                "",
            ),
            Injected::ServerError => amz_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "We encountered an internal error. Please try again.",
                "",
            ),
            Injected::Throttle { retry_after } => {
                let mut r = quota_exceeded();
                // Amazon sends no Retry-After (UNCONFIRMED, §2.3); only when the fault asks.
                if let Some(secs) = retry_after {
                    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs)) {
                        r.headers_mut().insert("retry-after", v);
                    }
                }
                r
            }
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(tok) = headers
            .get("x-amz-access-token")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(denied(""));
        };
        let st = lock(&self.state);
        match st.tokens.get(tok) {
            None => Err(denied(
                "The access token you provided is revoked, malformed or invalid.",
            )),
            Some(exp) if Instant::now() >= *exp => {
                Err(denied("The access token you provided has expired."))
            }
            Some(_) => Ok(()),
        }
    }

    /// Takes one token from the operation's bucket.
    fn take(&self, op: &str) -> bool {
        let Some(limit) = self.config.rate_limits.get(op).copied() else {
            return true;
        };
        let mut st = lock(&self.state);
        let now = Instant::now();
        let (level, at) = st
            .buckets
            .entry(op.to_string())
            .or_insert((limit.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * limit.rate).min(limit.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            false
        }
    }

    /// Faults, then authentication, then the operation's bucket.
    async fn gate(&self, op: &str, headers: &HeaderMap) -> Result<(), Response> {
        if let Some(inj) = self.core.intercept().await {
            return Err(self.injected(inj));
        }
        self.authorize(headers)?;
        if !self.take(op) {
            Counters::add(&self.core.counters.rate_limit_violations, 1);
            return Err(quota_exceeded());
        }
        Ok(())
    }

    fn check_seller(&self, seller: &str) -> Result<(), Response> {
        if seller == self.config.seller_id {
            Ok(())
        } else {
            Err(denied(
                "The seller id does not match the authorized selling partner.",
            ))
        }
    }

    fn check_marketplaces(&self, q: &Query) -> Result<(), Response> {
        match q.list("marketplaceIds") {
            None => Err(bad_listing_request(
                "Missing required parameter marketplaceIds.",
            )),
            Some(ids) if ids.is_empty() => Err(bad_listing_request(
                "Missing required parameter marketplaceIds.",
            )),
            Some(ids) if !ids.contains(&self.config.marketplace_id) => Err(bad_listing_request(
                "The seller is not registered in the requested marketplace.",
            )),
            Some(_) => Ok(()),
        }
    }

    fn listing_view(&self, l: &Listing) -> SimListing {
        let mut external = Map::new();
        external.insert("seller_sku".into(), json!(l.sku));
        external.insert("marketplace_id".into(), json!(self.config.marketplace_id));
        external.insert("product_type".into(), json!(l.product_type));
        let q = l.quantity();
        SimListing {
            sku: l.sku.clone(),
            external,
            quantity: q,
            availability: if q > 0 { "in_stock" } else { "out_of_stock" }.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LWA (§2.1)

async fn token_handler(State(sim): State<Sim>, body: Bytes) -> Response {
    Counters::add(&sim.core.counters.requests, 1);
    let text = String::from_utf8_lossy(&body);
    let form = Query(parse_form_urlencoded(&text));
    // OAuth 2 error shapes (RFC 6749 §5.2); LWA's exact descriptions are UNCONFIRMED.
    let oauth = |status: StatusCode, code: &str, desc: &str| {
        json_response(status, &json!({"error": code, "error_description": desc}))
    };
    let grant = form.one("grant_type").unwrap_or("");
    if grant.is_empty() {
        return oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter : grant_type",
        );
    }
    if grant != "refresh_token" {
        return oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        );
    }
    if form.one("client_id") != Some(sim.config.client_id.as_str())
        || form.one("client_secret") != Some(sim.config.client_secret.as_str())
    {
        return oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    match form.one("refresh_token") {
        None | Some("") => {
            return oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is missing a required parameter : refresh_token",
            )
        }
        Some(t) if t != sim.config.refresh_token => {
            return oauth(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The request has an invalid grant parameter : refresh_token",
            )
        }
        Some(_) => {}
    }
    let token = format!("Atza|sim-{}", sim.core.uuid());
    {
        let mut st = lock(&sim.state);
        let exp = Instant::now() + Duration::from_secs(sim.config.token_ttl_secs);
        st.tokens.retain(|_, e| *e > Instant::now());
        st.tokens.insert(token.clone(), exp);
        st.tokens_issued += 1;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "refresh_token": sim.config.refresh_token,
            "token_type": "bearer",
            "expires_in": sim.config.token_ttl_secs,
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Listings Items 2021-08-01 (§2.4)

/// A problem with a submission, rendered as a listings `Issue` or a feed report issue.
#[derive(Debug, Clone)]
struct Issue {
    code: &'static str,
    message: String,
    attribute: Option<String>,
    category: Option<&'static str>,
}

impl Issue {
    fn listing_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), json!(self.code));
        m.insert("message".into(), json!(self.message));
        m.insert("severity".into(), json!("ERROR"));
        if let Some(a) = &self.attribute {
            m.insert("attributeNames".into(), json!([a]));
        }
        m.insert(
            "categories".into(),
            json!(self.category.map(|c| vec![c]).unwrap_or_default()),
        );
        Value::Object(m)
    }

    fn report_json(&self, message_id: Option<i64>, sku: Option<&str>) -> Value {
        let mut m = Map::new();
        if let Some(id) = message_id {
            m.insert("messageId".into(), json!(id));
        }
        if let Some(s) = sku.filter(|s| !s.is_empty()) {
            m.insert("sku".into(), json!(s));
        }
        m.insert("code".into(), json!(self.code));
        m.insert("severity".into(), json!("ERROR"));
        m.insert("message".into(), json!(self.message));
        if let Some(a) = &self.attribute {
            m.insert("attributeName".into(), json!(a));
        }
        Value::Object(m)
    }
}

// Issue codes are UNCONFIRMED except 90000900 (listings model sandbox) and 90220 (feed report
// example, "'[x]' is required but not supplied.").
fn invalid_value(attr: &str, message: String) -> Issue {
    Issue {
        code: "90000900",
        message,
        attribute: Some(attr.to_string()),
        category: Some("INVALID_ATTRIBUTE"),
    }
}

fn missing_value(attr: &str, field: &str) -> Issue {
    Issue {
        code: "90220",
        message: format!("'[{field}]' is required but not supplied."),
        attribute: Some(attr.to_string()),
        category: Some("MISSING_ATTRIBUTE"),
    }
}

fn unknown_sku(sku: &str) -> Issue {
    Issue {
        code: "4000004",
        message: format!(
            "The SKU '{sku}' does not match any listing of this seller; a patch cannot create a listing."
        ),
        attribute: None,
        category: None,
    }
}

fn rejected_sku(sku: &str) -> Issue {
    Issue {
        code: "8572",
        message: format!("You are not approved to list the SKU '{sku}' in this marketplace."),
        attribute: None,
        category: Some("QUALIFICATION_REQUIRED"),
    }
}

/// The JSON-schema part of a `PatchOperation` (listingsItems model / feed schema); violations
/// are 400 on the Listings API and message errors in a feed.
fn check_patch_schema(p: &Value, i: usize) -> Result<(), String> {
    let Some(o) = p.as_object() else {
        return Err(format!("patches[{i}] must be an object."));
    };
    match o.get("op").and_then(Value::as_str) {
        Some("add" | "replace" | "merge" | "delete") => {}
        Some(other) => {
            return Err(format!(
                "patches[{i}].op '{other}' is not one of add, replace, merge, delete."
            ))
        }
        None => return Err(format!("patches[{i}].op is required.")),
    }
    if !o.get("path").is_some_and(Value::is_string) {
        return Err(format!(
            "patches[{i}].path is required and must be a string."
        ));
    }
    if let Some(v) = o.get("value") {
        match v.as_array() {
            Some(a) if a.iter().all(Value::is_object) => {}
            _ => return Err(format!("patches[{i}].value must be an array of objects.")),
        }
    }
    Ok(())
}

fn check_patch_request(body: &Value) -> Result<Vec<Value>, String> {
    let Some(o) = body.as_object() else {
        return Err("The request body must be a ListingsItemPatchRequest object.".into());
    };
    if !o.get("productType").is_some_and(Value::is_string) {
        return Err("productType is required and must be a string.".into());
    }
    let Some(patches) = o.get("patches").and_then(Value::as_array) else {
        return Err("patches is required and must be an array.".into());
    };
    if patches.is_empty() {
        return Err("patches must contain at least 1 item.".into());
    }
    for (i, p) in patches.iter().enumerate() {
        check_patch_schema(p, i)?;
    }
    Ok(patches.clone())
}

const FA: &str = "fulfillment_availability";

fn non_negative_int(v: &Value) -> Option<i64> {
    v.as_i64().filter(|n| *n >= 0)
}

/// Applies schema-valid patches to `l`, returning the semantic issues (§2.8 item 3): only
/// top-level `/attributes/…` paths, a non-empty `fulfillment_channel_code`, `quantity` an
/// integer ≥ 0; `merge` keeps unspecified fields, `replace`/`add` drop them.
fn apply_patches(l: &mut Listing, patches: &[Value]) -> Vec<Issue> {
    let mut issues = Vec::new();
    for p in patches {
        let op = p.get("op").and_then(Value::as_str).unwrap_or("");
        let path = p.get("path").and_then(Value::as_str).unwrap_or("");
        let Some(attr) = path
            .strip_prefix("/attributes/")
            .filter(|a| !a.is_empty() && !a.contains('/'))
        else {
            issues.push(Issue {
                code: "4000001",
                message: format!(
                    "The path '{path}' is invalid: only top-level attributes ('/attributes/<name>') can be patched."
                ),
                attribute: None,
                category: Some("INVALID_ATTRIBUTE"),
            });
            continue;
        };
        let value = p.get("value").and_then(Value::as_array);
        if op == "delete" {
            if attr == FA {
                l.fa = None;
            } else {
                l.attrs.remove(attr);
            }
            continue;
        }
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            issues.push(missing_value(attr, attr));
            continue;
        };
        if attr != FA {
            l.attrs
                .insert(attr.to_string(), Value::Array(value.clone()));
            continue;
        }
        for entry in value {
            let code = entry
                .get("fulfillment_channel_code")
                .and_then(Value::as_str)
                .unwrap_or("");
            if code.is_empty() {
                issues.push(missing_value(FA, "fulfillment_channel_code"));
                continue;
            }
            if code != "DEFAULT" {
                // FBA quantities belong to Amazon; only the merchant channel is settable.
                issues.push(invalid_value(
                    FA,
                    format!("The value '{code}' for 'fulfillment_channel_code' is not valid for this merchant-fulfilled listing."),
                ));
                continue;
            }
            let qty = match entry.get("quantity") {
                None => None,
                Some(v) => match non_negative_int(v) {
                    Some(n) => Some(n),
                    None => {
                        issues.push(invalid_value(
                            FA,
                            format!("The value '{v}' for 'quantity' is invalid: it must be an integer greater than or equal to 0."),
                        ));
                        continue;
                    }
                },
            };
            let lead = match entry.get("lead_time_to_ship_max_days") {
                None => None,
                Some(v) => match non_negative_int(v) {
                    Some(n) => Some(n),
                    None => {
                        issues.push(invalid_value(
                            FA,
                            format!("The value '{v}' for 'lead_time_to_ship_max_days' is invalid."),
                        ));
                        continue;
                    }
                },
            };
            let restock = match entry.get("restock_date") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => {
                    issues.push(invalid_value(
                        FA,
                        format!("The value '{v}' for 'restock_date' is invalid."),
                    ));
                    continue;
                }
            };
            if op == "merge" {
                let cur = l.fa.clone().unwrap_or(Availability {
                    quantity: 0,
                    lead_time: None,
                    restock_date: None,
                });
                l.fa = Some(Availability {
                    quantity: qty.unwrap_or(cur.quantity),
                    lead_time: lead.or(cur.lead_time),
                    restock_date: restock.or(cur.restock_date),
                });
            } else {
                let Some(q) = qty else {
                    issues.push(missing_value(FA, "quantity"));
                    continue;
                };
                l.fa = Some(Availability {
                    quantity: q,
                    lead_time: lead,
                    restock_date: restock,
                });
            }
        }
    }
    issues
}

fn included(q: &Query) -> Result<Vec<String>, String> {
    const ALLOWED: [&str; 8] = [
        "summaries",
        "attributes",
        "issues",
        "offers",
        "fulfillmentAvailability",
        "procurement",
        "relationships",
        "productTypes",
    ];
    let list = q
        .list("includedData")
        .unwrap_or_else(|| vec!["summaries".to_string()]);
    for d in &list {
        if !ALLOWED.contains(&d.as_str()) {
            return Err(format!("Invalid includedData value '{d}'."));
        }
    }
    Ok(list)
}

impl Amazon {
    fn item_json(&self, l: &Listing, included: &[String]) -> Value {
        let mut m = Map::new();
        m.insert("sku".into(), json!(l.sku));
        let mp = &self.config.marketplace_id;
        for d in included {
            let v = match d.as_str() {
                "summaries" => {
                    let status = if l.quantity() > 0 {
                        json!(["BUYABLE", "DISCOVERABLE"])
                    } else {
                        json!(["DISCOVERABLE"])
                    };
                    json!([{
                        "marketplaceId": mp,
                        "asin": l.asin,
                        "productType": l.product_type,
                        "conditionType": "new_new",
                        "status": status,
                        "itemName": format!("Simulated item {}", l.sku),
                        "createdDate": ts(&l.created),
                        "lastUpdatedDate": ts(&l.updated),
                    }])
                }
                "attributes" => {
                    let mut a = l.attrs.clone();
                    if let Some(fa) = &l.fa {
                        let mut e = Map::new();
                        e.insert("fulfillment_channel_code".into(), json!("DEFAULT"));
                        e.insert("quantity".into(), json!(fa.quantity));
                        if let Some(d) = fa.lead_time {
                            e.insert("lead_time_to_ship_max_days".into(), json!(d));
                        }
                        if let Some(r) = &fa.restock_date {
                            e.insert("restock_date".into(), json!(r));
                        }
                        a.insert(FA.into(), json!([e]));
                    }
                    Value::Object(a)
                }
                "fulfillmentAvailability" => match &l.fa {
                    Some(fa) => {
                        json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": fa.quantity}])
                    }
                    None => json!([]),
                },
                "relationships" => json!([{"marketplaceId": mp, "relationships": []}]),
                "productTypes" => json!([{"marketplaceId": mp, "productType": l.product_type}]),
                _ => json!([]),
            };
            m.insert(d.clone(), v);
        }
        Value::Object(m)
    }

    fn schedule_listing(self: &Arc<Self>, sku: String, patches: Vec<Value>, seq: u64) {
        let sim = Arc::clone(self);
        let mut stop = self.core.shutdown_signal();
        let delay = self.config.listing_delay;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let mut st = lock(&sim.state);
            if let Some(l) = st.listings.get_mut(&sku) {
                // A later submission already applied wins (submissions apply in order).
                if l.applied_seq < seq {
                    apply_patches(l, &patches);
                    l.applied_seq = seq;
                    l.updated = now();
                    Counters::add(&sim.core.counters.updates_applied, 1);
                }
            }
        });
    }
}

async fn patch_listing(
    State(sim): State<Sim>,
    Path((seller, sku)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = "patchListingsItem";
    let r = patch_listing_inner(&sim, &seller, &sku, raw.as_deref(), &headers, &body).await;
    sim.finish(op, r)
}

async fn patch_listing_inner(
    sim: &Sim,
    seller: &str,
    sku: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Err(r) = sim.gate("patchListingsItem", headers).await {
        return r;
    }
    if let Err(r) = sim.check_seller(seller) {
        return r;
    }
    let q = Query(parse_form_urlencoded(raw.unwrap_or("")));
    if let Err(r) = sim.check_marketplaces(&q) {
        return r;
    }
    let preview = match q.one("mode") {
        None => false,
        Some("VALIDATION_PREVIEW") => true,
        Some(m) => return bad_listing_request(&format!("Invalid mode '{m}'.")),
    };
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return bad_listing_request("The request body is not valid JSON."),
    };
    let patches = match check_patch_request(&parsed) {
        Ok(p) => p,
        Err(e) => return bad_listing_request(&e),
    };
    let submission = sim.core.uuid();
    let issues: Vec<Issue>;
    let seq;
    {
        let mut st = lock(&sim.state);
        issues = match st.listings.get(sku) {
            None => vec![unknown_sku(sku)],
            Some(_) if sim.core.rejects_sku(sku) => vec![rejected_sku(sku)],
            Some(l) => {
                let mut copy = l.clone();
                apply_patches(&mut copy, &patches)
            }
        };
        st.seq += 1;
        seq = st.seq;
    }
    let issues_json: Vec<Value> = issues.iter().map(Issue::listing_json).collect();
    let status = if !issues.is_empty() {
        "INVALID"
    } else if preview {
        "VALID"
    } else {
        sim.schedule_listing(sku.to_string(), patches, seq);
        "ACCEPTED"
    };
    let mut resp = json!({
        "sku": sku,
        "status": status,
        "submissionId": submission,
        "issues": issues_json,
    });
    if q.list("includedData")
        .is_some_and(|d| d.iter().any(|x| x == "identifiers"))
    {
        let asin = lock(&sim.state).listings.get(sku).map(|l| l.asin.clone());
        resp["identifiers"] = match asin {
            Some(a) => json!([{"marketplaceId": sim.config.marketplace_id, "asin": a}]),
            None => json!([]),
        };
    }
    json_response(StatusCode::OK, &resp)
}

async fn get_listing(
    State(sim): State<Sim>,
    Path((seller, sku)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = async {
        sim.gate("getListingsItem", &headers).await?;
        sim.check_seller(&seller)?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        sim.check_marketplaces(&q)?;
        let inc = included(&q).map_err(|e| bad_listing_request(&e))?;
        let st = lock(&sim.state);
        match st.listings.get(&sku) {
            Some(l) => Ok(json_response(StatusCode::OK, &sim.item_json(l, &inc))),
            // 404 per §2.8 item 4; code and message UNCONFIRMED.
            None => Err(amz_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!(
                    "SKU '{sku}' not found in marketplace {}",
                    sim.config.marketplace_id
                ),
                "",
            )),
        }
    }
    .await;
    sim.finish("getListingsItem", r.unwrap_or_else(|e| e))
}

async fn search_listings(
    State(sim): State<Sim>,
    Path(seller): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = async {
        sim.gate("searchListingsItems", &headers).await?;
        sim.check_seller(&seller)?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        sim.check_marketplaces(&q)?;
        let inc = included(&q).map_err(|e| bad_listing_request(&e))?;
        let page_size = match q.one("pageSize") {
            None => 10,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=20).contains(&n) => n,
                _ => return Err(bad_listing_request("pageSize must be between 1 and 20.")),
            },
        };
        let offset = match q.one("pageToken") {
            None => 0,
            Some(t) => t
                .strip_prefix("sim-page-")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad_listing_request("Invalid pageToken."))?,
        };
        let identifiers = q.list("identifiers");
        let id_type = q.one("identifiersType");
        if identifiers.is_some() != id_type.is_some() {
            return Err(bad_listing_request(
                "identifiers and identifiersType must be provided together.",
            ));
        }
        let with_status = q.list("withStatus").unwrap_or_default();
        let without_status = q.list("withoutStatus").unwrap_or_default();
        let st = lock(&sim.state);
        let mut items: Vec<&Listing> = st
            .listings
            .values()
            .filter(|l| match (&identifiers, id_type) {
                (Some(ids), Some("SKU")) => ids.contains(&l.sku),
                (Some(ids), Some("ASIN")) => ids.contains(&l.asin),
                (Some(_), Some(_)) => false,
                _ => true,
            })
            .filter(|l| {
                let buyable = l.quantity() > 0;
                let has = |s: &String| s == "DISCOVERABLE" || (s == "BUYABLE" && buyable);
                with_status.iter().all(has) && !without_status.iter().any(has)
            })
            .collect();
        match q.one("sortBy").unwrap_or("lastUpdatedDate") {
            "sku" => items.sort_by(|a, b| a.sku.cmp(&b.sku)),
            "createdDate" => items.sort_by_key(|l| l.created),
            _ => items.sort_by_key(|l| l.updated),
        }
        if q.one("sortOrder").unwrap_or("DESC") == "DESC" {
            items.reverse();
        }
        let total = items.len();
        let page: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|l| sim.item_json(l, &inc))
            .collect();
        let mut pagination = Map::new();
        if offset + page_size < total {
            pagination.insert(
                "nextToken".into(),
                json!(format!("sim-page-{}", offset + page_size)),
            );
        }
        if offset > 0 {
            pagination.insert(
                "previousToken".into(),
                json!(format!("sim-page-{}", offset.saturating_sub(page_size))),
            );
        }
        let mut resp = json!({"numberOfResults": total, "items": page});
        if !pagination.is_empty() {
            resp["pagination"] = Value::Object(pagination);
        }
        Ok(json_response(StatusCode::OK, &resp))
    }
    .await;
    sim.finish("searchListingsItems", r.unwrap_or_else(|e| e))
}

// ---------------------------------------------------------------------------------------------
// Feeds 2021-06-30 with JSON_LISTINGS_FEED (§2.5)

fn parse_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| invalid_input("The request body is not valid JSON."))
}

async fn create_feed_document(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let op = "createFeedDocument";
    let r = async {
        sim.gate(op, &headers).await?;
        let v = parse_body(&body)?;
        let Some(ct) = v.get("contentType").and_then(Value::as_str) else {
            return Err(invalid_input("contentType is required."));
        };
        let id = format!("amzn1.tortuga.4.eu.{}", sim.core.uuid());
        lock(&sim.state).docs.insert(
            id.clone(),
            Document {
                content_type: ct.to_string(),
                body: None,
            },
        );
        // The pre-signed upload URL points back at this simulator (upload details UNCONFIRMED).
        let url = format!("{}/s3/feed-documents/{id}", sim.base_url);
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"feedDocumentId": id, "url": url}),
        ))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// The pre-signed S3 URL: no access token, not an SP-API call.
async fn upload_document(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Response {
    let mut st = lock(&sim.state);
    match st.docs.get_mut(&id) {
        Some(d) => {
            d.body = Some(body.to_vec());
            StatusCode::OK.into_response()
        }
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

async fn download_document(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let st = lock(&sim.state);
    match st.docs.get(&id) {
        Some(Document {
            content_type,
            body: Some(b),
        }) => {
            let mut r = (StatusCode::OK, b.clone()).into_response();
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert("content-type", v);
            }
            r
        }
        _ => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

async fn get_feed_document(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "getFeedDocument";
    let r = async {
        sim.gate(op, &headers).await?;
        if !lock(&sim.state).docs.contains_key(&id) {
            return Err(amz_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested feed document was not found.",
                "",
            ));
        }
        let url = format!("{}/s3/feed-documents/{id}", sim.base_url);
        Ok(json_response(
            StatusCode::OK,
            &json!({"feedDocumentId": id, "url": url}),
        ))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

async fn create_feed(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let op = "createFeed";
    let r = async {
        sim.gate(op, &headers).await?;
        let v = parse_body(&body)?;
        let Some(feed_type) = v.get("feedType").and_then(Value::as_str) else {
            return Err(invalid_input("feedType is required."));
        };
        let mps = match v.get("marketplaceIds").and_then(Value::as_array) {
            Some(a) if !a.is_empty() && a.iter().all(Value::is_string) => a.clone(),
            _ => return Err(invalid_input("marketplaceIds is required.")),
        };
        let Some(doc) = v.get("inputFeedDocumentId").and_then(Value::as_str) else {
            return Err(invalid_input("inputFeedDocumentId is required."));
        };
        let id = {
            let mut st = lock(&sim.state);
            if !st.docs.contains_key(doc) {
                return Err(invalid_input("inputFeedDocumentId does not exist."));
            }
            st.next_feed += 1;
            let id = format!("{}", 50_001_019_000u64 + st.next_feed);
            st.feeds.insert(
                id.clone(),
                Feed {
                    id: id.clone(),
                    feed_type: feed_type.to_string(),
                    marketplace_ids: mps,
                    input_doc: doc.to_string(),
                    created: now(),
                    started: None,
                    ended: None,
                    status: FeedStatus::InQueue,
                    result_doc: None,
                },
            );
            id
        };
        sim.schedule_feed(id.clone());
        Ok(json_response(StatusCode::ACCEPTED, &json!({"feedId": id})))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

fn feed_json(f: &Feed) -> Value {
    let mut m = Map::new();
    m.insert("feedId".into(), json!(f.id));
    m.insert("feedType".into(), json!(f.feed_type));
    m.insert(
        "marketplaceIds".into(),
        Value::Array(f.marketplace_ids.clone()),
    );
    m.insert("createdTime".into(), json!(ts(&f.created)));
    m.insert("processingStatus".into(), json!(f.status.as_str()));
    if let Some(t) = &f.started {
        m.insert("processingStartTime".into(), json!(ts(t)));
    }
    if let Some(t) = &f.ended {
        m.insert("processingEndTime".into(), json!(ts(t)));
    }
    if let Some(d) = &f.result_doc {
        m.insert("resultFeedDocumentId".into(), json!(d));
    }
    Value::Object(m)
}

fn feed_not_found() -> Response {
    amz_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested feed was not found.",
        "",
    )
}

async fn get_feed(State(sim): State<Sim>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let op = "getFeed";
    let r = async {
        sim.gate(op, &headers).await?;
        let st = lock(&sim.state);
        match st.feeds.get(&id) {
            Some(f) => Ok(json_response(StatusCode::OK, &feed_json(f))),
            None => Err(feed_not_found()),
        }
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// Only a feed still IN_QUEUE can be cancelled (error code for the others UNCONFIRMED).
async fn cancel_feed(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "cancelFeed";
    let r = async {
        sim.gate(op, &headers).await?;
        let mut st = lock(&sim.state);
        let Some(f) = st.feeds.get_mut(&id) else {
            return Err(feed_not_found());
        };
        if f.status != FeedStatus::InQueue {
            return Err(invalid_input(
                "Only feeds in the IN_QUEUE status can be cancelled.",
            ));
        }
        f.status = FeedStatus::Cancelled;
        f.ended = Some(now());
        Ok(StatusCode::OK.into_response())
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// The oneOf branches of listings-feed-schema-v2.json, per operationType.
fn check_message_schema(m: &Value) -> Result<(), String> {
    let Some(o) = m.as_object() else {
        return Err("The message must be an object.".into());
    };
    match o.get("messageId").and_then(Value::as_i64) {
        Some(id) if (1..=2_147_483_647).contains(&id) => {}
        _ => {
            return Err(
                "'messageId' is required and must be an integer between 1 and 2147483647.".into(),
            )
        }
    }
    if o.get("sku")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("'sku' is required and must be a non-empty string.".into());
    }
    let op = o.get("operationType").and_then(Value::as_str).unwrap_or("");
    let (required, forbidden): (&[&str], &[&str]) = match op {
        "UPDATE" => (&["productType", "attributes"], &["patches"]),
        "PARTIAL_UPDATE" => (&["productType", "attributes"], &["requirements", "patches"]),
        "PATCH" => (&["productType", "patches"], &["requirements", "attributes"]),
        "DELETE" => (
            &[],
            &["requirements", "attributes", "productType", "patches"],
        ),
        _ => return Err(
            "'operationType' is required and must be one of UPDATE, PARTIAL_UPDATE, PATCH, DELETE."
                .into(),
        ),
    };
    for k in required {
        if !o.contains_key(*k) {
            return Err(format!("'{k}' is required for operationType {op}."));
        }
    }
    for k in forbidden {
        if o.contains_key(*k) {
            return Err(format!("'{k}' is not applicable to operationType {op}."));
        }
    }
    if let Some(pt) = o.get("productType") {
        if pt.as_str().is_none_or(str::is_empty) {
            return Err("'productType' must be a non-empty string.".into());
        }
    }
    if let Some(r) = o.get("requirements") {
        if !matches!(
            r.as_str(),
            Some("LISTING" | "LISTING_PRODUCT_ONLY" | "LISTING_OFFER_ONLY")
        ) {
            return Err(
                "'requirements' must be LISTING, LISTING_PRODUCT_ONLY or LISTING_OFFER_ONLY."
                    .into(),
            );
        }
    }
    if let Some(a) = o.get("attributes") {
        if a.as_object().is_none_or(Map::is_empty) {
            return Err("'attributes' must be an object with at least 1 property.".into());
        }
    }
    if let Some(p) = o.get("patches") {
        match p.as_array() {
            Some(a) if !a.is_empty() => {
                for (i, x) in a.iter().enumerate() {
                    check_patch_schema(x, i)?;
                }
            }
            _ => return Err("'patches' must be an array with at least 1 item.".into()),
        }
    }
    Ok(())
}

/// Feed-level validation: header and messages (listings-feed-schema-v2.json).
fn check_feed_document(
    doc: &Value,
    max: usize,
) -> Result<(&Map<String, Value>, &Vec<Value>), String> {
    let Some(o) = doc.as_object() else {
        return Err("The feed document must be a JSON object.".into());
    };
    let Some(h) = o.get("header").and_then(Value::as_object) else {
        return Err("'header' is required.".into());
    };
    if !h.get("sellerId").is_some_and(Value::is_string) {
        return Err("'header.sellerId' is required.".into());
    }
    if h.get("version").and_then(Value::as_str) != Some("2.0") {
        return Err("'header.version' is required and must be \"2.0\".".into());
    }
    let Some(msgs) = o.get("messages").and_then(Value::as_array) else {
        return Err("'messages' is required and must be an array.".into());
    };
    if msgs.is_empty() {
        return Err("'messages' must contain at least 1 message.".into());
    }
    if msgs.len() > max {
        return Err(format!(
            "The feed contains {} messages; the maximum is {max}.",
            msgs.len()
        ));
    }
    Ok((h, msgs))
}

fn fatal_issue(message: String) -> Issue {
    Issue {
        code: "4000001",
        message,
        attribute: None,
        category: None,
    }
}

impl Amazon {
    fn schedule_feed(self: &Arc<Self>, id: String) {
        let sim = Arc::clone(self);
        let mut stop = self.core.shutdown_signal();
        let first = self.config.feed_delay / 2;
        let second = self.config.feed_delay.saturating_sub(first);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(first) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            {
                let mut st = lock(&sim.state);
                let Some(f) = st.feeds.get_mut(&id) else {
                    return;
                };
                if f.status != FeedStatus::InQueue {
                    return;
                }
                f.status = FeedStatus::InProgress;
                f.started = Some(now());
            }
            tokio::select! {
                _ = tokio::time::sleep(second) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            sim.finish_feed(&id);
        });
    }

    fn store_report(&self, st: &mut AmzState, report: &Value) -> String {
        let id = format!("amzn1.tortuga.4.eu.{}", self.core.uuid());
        st.docs.insert(
            id.clone(),
            Document {
                content_type: "application/json; charset=UTF-8".into(),
                body: Some(report.to_string().into_bytes()),
            },
        );
        id
    }

    fn finish_feed(&self, id: &str) {
        let mut st = lock(&self.state);
        let forced = st.feed_outcomes.pop_front();
        let Some(f) = st.feeds.get(id) else { return };
        let input = st.docs.get(&f.input_doc).and_then(|d| d.body.clone());
        let feed_type = f.feed_type.clone();
        let header = json!({"sellerId": self.config.seller_id, "version": "2.0", "feedId": id});
        let fatal_report = |msg: String| {
            json!({
                "header": header,
                "issues": [fatal_issue(msg).report_json(None, None)],
                "summary": {"errors": 1, "warnings": 0, "messagesProcessed": 0,
                            "messagesAccepted": 0, "messagesInvalid": 0},
            })
        };
        let (status, report) = match forced {
            Some(FeedStatus::Cancelled) => {
                Counters::add(&self.core.counters.injected_faults, 1);
                (FeedStatus::Cancelled, None)
            }
            Some(FeedStatus::Fatal) => {
                Counters::add(&self.core.counters.injected_faults, 1);
                (
                    FeedStatus::Fatal,
                    Some(fatal_report(
                        "Injected fatal error: the feed could not be processed.".into(),
                    )),
                )
            }
            _ if feed_type != "JSON_LISTINGS_FEED" => (
                FeedStatus::Fatal,
                Some(fatal_report(format!(
                    "The feed type {feed_type} is not supported by this simulator."
                ))),
            ),
            _ => match input.as_deref().map(serde_json::from_slice::<Value>) {
                None => (
                    FeedStatus::Fatal,
                    Some(fatal_report("The feed document was never uploaded.".into())),
                ),
                Some(Err(e)) => (
                    FeedStatus::Fatal,
                    Some(fatal_report(format!(
                        "The feed document is not valid JSON: {e}"
                    ))),
                ),
                Some(Ok(doc)) => match check_feed_document(&doc, self.config.max_feed_messages) {
                    Err(e) => (FeedStatus::Fatal, Some(fatal_report(e))),
                    Ok((h, msgs)) => {
                        let report = self.process_messages(&mut st, id, h, msgs);
                        (FeedStatus::Done, Some(report))
                    }
                },
            },
        };
        let result_doc = report.map(|r| self.store_report(&mut st, &r));
        if let Some(f) = st.feeds.get_mut(id) {
            f.status = status;
            f.ended = Some(now());
            f.result_doc = result_doc;
        }
    }

    fn process_messages(
        &self,
        st: &mut AmzState,
        feed_id: &str,
        h: &Map<String, Value>,
        msgs: &[Value],
    ) -> Value {
        let mut issues = Vec::new();
        let mut invalid = 0u64;
        let mut accepted_skus = Vec::new();
        for m in msgs {
            let mid = m.get("messageId").and_then(Value::as_i64);
            let sku = m
                .get("sku")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let found = match self.process_message(st, m, &sku) {
                Ok(()) => Vec::new(),
                Err(found) => found,
            };
            if found.is_empty() {
                accepted_skus.push(sku);
            } else {
                invalid += 1;
                issues.extend(found.iter().map(|i| i.report_json(mid, Some(&sku))));
            }
        }
        let mut header =
            json!({"sellerId": self.config.seller_id, "version": "2.0", "feedId": feed_id});
        let included = h
            .get("report")
            .and_then(|r| r.get("includedData"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            });
        if let Some(r) = h.get("report") {
            header["report"] = r.clone();
        }
        let n = msgs.len() as u64;
        let mut report = json!({
            "header": header,
            "issues": issues,
            "summary": {
                "errors": issues.len(),
                "warnings": 0,
                "messagesProcessed": n,
                "messagesAccepted": n - invalid,
                "messagesInvalid": invalid,
            },
        });
        if let Some(inc) = included.filter(|i| !i.is_empty()) {
            let items: Vec<Value> = accepted_skus
                .iter()
                .filter_map(|s| st.listings.get(s))
                .map(|l| self.item_json(l, &inc))
                .collect();
            report["summary"]["itemSummary"] =
                json!({"items": items.len(), "errors": 0, "warnings": 0});
            report["items"] = Value::Array(items);
        }
        report
    }

    fn process_message(&self, st: &mut AmzState, m: &Value, sku: &str) -> Result<(), Vec<Issue>> {
        check_message_schema(m).map_err(|e| vec![fatal_issue(e)])?;
        if self.core.rejects_sku(sku) {
            return Err(vec![rejected_sku(sku)]);
        }
        let op = m.get("operationType").and_then(Value::as_str).unwrap_or("");
        if op == "DELETE" {
            st.listings.remove(sku);
            return Ok(());
        }
        // PARTIAL_UPDATE equals PATCH with `replace` (feed schema); UPDATE replaces everything.
        let patches: Vec<Value> = match op {
            "PATCH" => m
                .get("patches")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => m
                .get("attributes")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            json!({"op": "replace", "path": format!("/attributes/{k}"), "value": v})
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        for (i, p) in patches.iter().enumerate() {
            check_patch_schema(p, i).map_err(|e| vec![fatal_issue(e)])?;
        }
        st.seq += 1;
        let seq = st.seq;
        let Some(l) = st.listings.get_mut(sku) else {
            return Err(vec![unknown_sku(sku)]);
        };
        let mut copy = l.clone();
        if op == "UPDATE" {
            copy.fa = None;
            copy.attrs.clear();
        }
        let issues = apply_patches(&mut copy, &patches);
        if !issues.is_empty() {
            return Err(issues);
        }
        copy.applied_seq = seq;
        copy.updated = now();
        *l = copy;
        Counters::add(&self.core.counters.updates_applied, 1);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Orders v2026-01-01 (§2.6)

const FULFILLMENT_STATUSES: [&str; 7] = [
    "PENDING_AVAILABILITY",
    "PENDING",
    "UNSHIPPED",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "CANCELLED",
    "UNFULFILLABLE",
];
const ORDER_DATASETS: [&str; 11] = [
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
];

fn parse_time(q: &Query, key: &str) -> Result<Option<DateTime<Utc>>, Response> {
    match q.one(key) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid_input(&format!("{key} must be an ISO 8601 date-time."))),
    }
}

fn order_datasets(q: &Query) -> Result<Vec<String>, Response> {
    let d = q.list("includedData").unwrap_or_default();
    if let Some(bad) = d.iter().find(|x| !ORDER_DATASETS.contains(&x.as_str())) {
        return Err(invalid_input(&format!(
            "Invalid includedData value '{bad}'."
        )));
    }
    Ok(d)
}

/// The v0-style status used in ORDER_CHANGE summaries (OrderChangeNotification.json enum).
fn legacy_status(s: &str) -> &'static str {
    match s {
        "PENDING" => "Pending",
        "PENDING_AVAILABILITY" => "PendingAvailability",
        "PARTIALLY_SHIPPED" => "PartiallyShipped",
        "SHIPPED" => "Shipped",
        "CANCELLED" => "Canceled",
        "UNFULFILLABLE" => "Unfulfillable",
        _ => "Unshipped",
    }
}

impl Amazon {
    /// An `Order`; optional datasets only when requested through `includedData` (the
    /// defaults of the real API are UNCONFIRMED, so nothing optional is sent unasked).
    fn order_json(&self, o: &Order, datasets: &[String]) -> Value {
        let want = |d: &str| datasets.iter().any(|x| x == d);
        let cancelled = o.status == "CANCELLED";
        let shipped = o.status == "SHIPPED";
        let items: Vec<Value> = o
            .items
            .iter()
            .map(|i| {
                let mut v = json!({
                    "orderItemId": i.id,
                    "quantityOrdered": i.quantity,
                    "product": {
                        "asin": i.asin,
                        "title": format!("Simulated item {}", i.sku),
                        "sellerSku": i.sku,
                        "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
                        "price": {"unitPrice": {"amount": "10.00", "currencyCode": "EUR"}},
                    },
                });
                if want("FULFILLMENT") {
                    let done = if shipped { i.quantity } else { 0 };
                    let open = if shipped || cancelled { 0 } else { i.quantity };
                    v["fulfillment"] = json!({"quantityFulfilled": done, "quantityUnfulfilled": open});
                }
                if want("CANCELLATION") && cancelled {
                    v["cancellation"] = json!({
                        "cancellationRequest": {"requester": "BUYER", "cancelReason": "Buyer canceled"},
                        "cancellationExecution": {"cancelledBy": "BUYER", "cancelReason": "Buyer canceled"},
                    });
                }
                v
            })
            .collect();
        let mut v = json!({
            "orderId": o.id,
            "createdTime": ts(&o.created),
            "lastUpdatedTime": ts(&o.updated),
            "salesChannel": {
                "channelName": "AMAZON",
                "marketplaceId": self.config.marketplace_id,
                "marketplaceName": "Amazon.nl",
            },
            "orderItems": items,
        });
        if want("FULFILLMENT") {
            v["fulfillment"] = json!({
                "fulfillmentStatus": o.status,
                "fulfilledBy": "MERCHANT",
                "fulfillmentServiceLevel": "STANDARD",
            });
        }
        v
    }
}

async fn search_orders(
    State(sim): State<Sim>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let op = "searchOrders";
    let r = async {
        sim.gate(op, &headers).await?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        let ca = parse_time(&q, "createdAfter")?;
        let cb = parse_time(&q, "createdBefore")?;
        let ua = parse_time(&q, "lastUpdatedAfter")?;
        let ub = parse_time(&q, "lastUpdatedBefore")?;
        // Exactly one of createdAfter / lastUpdatedAfter, and no mixing (parameter notes).
        let by_created = match (ca, ua) {
            (Some(_), None) if ub.is_none() => true,
            (None, Some(_)) if cb.is_none() => false,
            _ => {
                return Err(invalid_input(
                    "Exactly one of createdAfter and lastUpdatedAfter must be provided, without mixing created and lastUpdated parameters.",
                ))
            }
        };
        let t_now = now();
        let (after, before) = if by_created { (ca, cb) } else { (ua, ub) };
        let after = after.unwrap_or(t_now);
        if let Some(b) = before {
            if b < after || b > t_now - chrono::Duration::minutes(2) {
                return Err(invalid_input(
                    "The before date must be equal to or after the after date and at least two minutes before the time of the request.",
                ));
            }
        }
        let statuses = q.list("fulfillmentStatuses").unwrap_or_default();
        if let Some(bad) = statuses
            .iter()
            .find(|s| !FULFILLMENT_STATUSES.contains(&s.as_str()))
        {
            return Err(invalid_input(&format!("Invalid fulfillmentStatuses value '{bad}'.")));
        }
        let marketplaces = q.list("marketplaceIds").unwrap_or_default();
        if marketplaces.len() > 50 {
            return Err(invalid_input("At most 50 marketplaceIds are allowed."));
        }
        let fulfilled_by = q.list("fulfilledBy").unwrap_or_default();
        if let Some(bad) = fulfilled_by
            .iter()
            .find(|s| *s != "MERCHANT" && *s != "AMAZON")
        {
            return Err(invalid_input(&format!("Invalid fulfilledBy value '{bad}'.")));
        }
        let page_size = match q.one("maxResultsPerPage") {
            None => 100,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(invalid_input("maxResultsPerPage must be between 1 and 100.")),
            },
        };
        let datasets = order_datasets(&q)?;
        // A token is valid only with the same filters (maxResultsPerPage and includedData may
        // change between pages).
        let key: String = {
            let mut parts: Vec<String> = q
                .0
                .iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "maxResultsPerPage" | "includedData" | "paginationToken")
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.sort();
            parts.join("&")
        };
        let mut st = lock(&sim.state);
        let ttl = sim.config.pagination_token_ttl;
        let offset = match q.one("paginationToken") {
            None => 0,
            Some(t) => match st.page_tokens.get(t) {
                Some(p) if p.key == key && p.issued.elapsed() < ttl => p.offset,
                Some(p) if p.issued.elapsed() >= ttl => {
                    return Err(invalid_input("The paginationToken has expired."))
                }
                _ => return Err(invalid_input("Invalid paginationToken.")),
            },
        };
        let mp = &sim.config.marketplace_id;
        let mut hits: Vec<&Order> = st
            .orders
            .iter()
            .filter(|o| {
                let t = if by_created { o.created } else { o.updated };
                t >= after && before.is_none_or(|b| t <= b)
            })
            .filter(|o| statuses.is_empty() || statuses.iter().any(|s| s == o.status))
            .filter(|_| marketplaces.is_empty() || marketplaces.iter().any(|m| m == mp))
            .filter(|_| fulfilled_by.is_empty() || fulfilled_by.iter().any(|f| f == "MERCHANT"))
            .collect();
        if by_created {
            hits.sort_by_key(|o| o.created);
        } else {
            hits.sort_by_key(|o| o.updated);
        }
        let total = hits.len();
        let orders: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|o| sim.order_json(o, &datasets))
            .collect();
        let bound = ts(&before.unwrap_or(t_now));
        let mut resp = json!({"orders": orders});
        resp[if by_created { "createdBefore" } else { "lastUpdatedBefore" }] = json!(bound);
        if offset + page_size < total {
            let token = sim.core.uuid().replace('-', "");
            st.page_tokens.retain(|_, p| p.issued.elapsed() < ttl);
            st.page_tokens.insert(
                token.clone(),
                PageToken {
                    key,
                    offset: offset + page_size,
                    issued: Instant::now(),
                },
            );
            resp["pagination"] = json!({"nextToken": token});
        }
        Ok(json_response(StatusCode::OK, &resp))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

async fn get_order(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let op = "getOrder";
    let r = async {
        sim.gate(op, &headers).await?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        let datasets = order_datasets(&q)?;
        let st = lock(&sim.state);
        match st.orders.iter().find(|o| o.id == id) {
            Some(o) => Ok(json_response(
                StatusCode::OK,
                &json!({"order": sim.order_json(o, &datasets)}),
            )),
            None => Err(amz_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested order was not found.",
                "",
            )),
        }
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

// ---------------------------------------------------------------------------------------------
// ORDER_CHANGE notifications (§2.7) and simulated customers

impl Amazon {
    fn notify(&self, o: &Order, reason: &str) {
        let Some(url) = self.config.notification_url.clone() else {
            return;
        };
        let t = ts(&o.updated);
        let shipped = o.status == "SHIPPED";
        let items: Vec<Value> = o
            .items
            .iter()
            .map(|i| {
                json!({
                    "OrderItemId": i.id,
                    "SellerSKU": i.sku,
                    "SupplySourceId": null,
                    "OrderItemStatus": if shipped { "Shipped" } else { "Unshipped" },
                    "Quantity": i.quantity,
                    "QuantityShipped": if shipped { i.quantity } else { 0 },
                    "IsBuyerRequestedCancel": o.status == "CANCELLED",
                })
            })
            .collect();
        let total: i64 = o.items.iter().map(|i| i.quantity).sum();
        let body = json!({
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": t,
            "Payload": {"OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": self.config.seller_id,
                "AmazonOrderId": o.id,
                "OrderChangeType": "OrderStatusChange",
                "OrderChangeTrigger": {"TimeOfOrderChange": t, "ChangeReason": reason},
                "Summary": {
                    "MarketplaceId": self.config.marketplace_id,
                    "OrderStatus": legacy_status(o.status),
                    "PurchaseDate": ts(&o.created),
                    "DestinationPostalCode": "1011AB",
                    "FulfillmentType": "MFN",
                    "OrderType": "StandardOrder",
                    "NumberOfItemsShipped": if shipped { total } else { 0 },
                    "NumberOfItemsUnshipped": if shipped || o.status == "CANCELLED" { 0 } else { total },
                    "OrderItems": items,
                },
            }},
            "NotificationMetadata": {
                "ApplicationId": self.config.application_id,
                "SubscriptionId": self.config.subscription_id,
                "PublishTime": ts(&now()),
                "NotificationId": self.core.uuid(),
            },
        });
        let body = body.to_string().into_bytes();
        let sig = hmac_sha256_base64(self.config.notification_secret.as_bytes(), &body);
        self.core.send_webhook(
            Delivery {
                url,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("X-Stockd-Signature".into(), sig),
                ],
                body,
            },
            RetryPolicy {
                delays: self.config.notification_retry_delays.clone(),
                max_success_status: 299,
                timeout: self.config.notification_timeout,
            },
            None,
        );
    }

    fn digits(&self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.core.rand_u64() % 10) as u8))
            .collect()
    }

    fn ship(&self, id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let o = st
            .orders
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or_else(|| SimError::UnknownOrder(id.to_string()))?;
        if o.status != "UNSHIPPED" && o.status != "PENDING" {
            return Err(SimError::InvalidState(format!("order is {}", o.status)));
        }
        o.status = "SHIPPED";
        o.updated = now();
        let o = o.clone();
        drop(st);
        self.notify(&o, "Order shipped");
        Ok(())
    }
}

async fn sim_tokens(State(sim): State<Sim>) -> Response {
    let st = lock(&sim.state);
    let active = st.tokens.values().filter(|e| **e > Instant::now()).count();
    json_response(
        StatusCode::OK,
        &json!({"issued": st.tokens_issued, "active": active}),
    )
}

/// `{"outcomes": ["FATAL", "CANCELLED", "DONE"]}`: the next feeds to finish end this way.
async fn sim_feed_outcomes(State(sim): State<Sim>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(list) = v.get("outcomes").and_then(Value::as_array) else {
        return SimError::BadRequest("expected {\"outcomes\": [...]}".into()).to_response_pub();
    };
    let mut parsed = Vec::new();
    for x in list {
        parsed.push(match x.as_str() {
            Some("FATAL") => FeedStatus::Fatal,
            Some("CANCELLED") => FeedStatus::Cancelled,
            Some("DONE") => FeedStatus::Done,
            _ => {
                return SimError::BadRequest("outcomes are FATAL, CANCELLED or DONE".into())
                    .to_response_pub()
            }
        });
    }
    let mut st = lock(&sim.state);
    st.feed_outcomes.extend(parsed);
    json_response(StatusCode::OK, &json!({"queued": st.feed_outcomes.len()}))
}

async fn sim_ship(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.ship(&id) {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"order_id": id, "status": "shipped"}),
        ),
        Err(e) => e.to_response_pub(),
    }
}

trait ToResponsePub {
    fn to_response_pub(&self) -> Response;
}

impl ToResponsePub for SimError {
    /// The `/_sim` error shape of the shared endpoints.
    fn to_response_pub(&self) -> Response {
        let (status, code) = match self {
            SimError::NotAvailable => (StatusCode::CONFLICT, "not_available"),
            SimError::UnknownSku(_) => (StatusCode::NOT_FOUND, "unknown_sku"),
            SimError::UnknownOrder(_) => (StatusCode::NOT_FOUND, "unknown_order"),
            SimError::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
            SimError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        json_response(status, &json!({"error": code, "message": self.to_string()}))
    }
}

impl SimBackend for Amazon {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let st = lock(&self.state);
        st.listings.values().map(|l| self.listing_view(l)).collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        for it in items {
            let t = now();
            let asin = format!("B0{}", self.digits(8));
            let l = st
                .listings
                .entry(it.sku.clone())
                .or_insert_with(|| Listing {
                    sku: it.sku.clone(),
                    asin,
                    product_type: PRODUCT_TYPE.into(),
                    fa: None,
                    attrs: Map::new(),
                    created: t,
                    updated: t,
                    applied_seq: 0,
                });
            l.fa = Some(Availability {
                quantity: it.quantity.max(0),
                lead_time: None,
                restock_date: None,
            });
            l.updated = t;
            out.push(self.listing_view(l));
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        for (sku, qty) in lines {
            if *qty <= 0 {
                return Err(SimError::BadRequest("quantity must be > 0".into()));
            }
            let l = st
                .listings
                .get(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            let wanted: i64 = lines
                .iter()
                .filter(|(s, _)| s == sku)
                .map(|(_, q)| *q)
                .sum();
            if l.quantity() < wanted {
                return Err(SimError::NotAvailable);
            }
        }
        let t = now();
        let mut items = Vec::new();
        for (sku, qty) in lines {
            if let Some(l) = st.listings.get_mut(sku) {
                if let Some(fa) = l.fa.as_mut() {
                    fa.quantity -= qty;
                }
                l.updated = t;
                items.push(OrderItem {
                    id: self.digits(14),
                    sku: sku.clone(),
                    asin: l.asin.clone(),
                    quantity: *qty,
                });
            }
        }
        let id = format!("{}-{}-{}", self.digits(3), self.digits(7), self.digits(7));
        // MFN orders are taken as paid at once: created straight in UNSHIPPED (choice).
        let o = Order {
            id: id.clone(),
            created: t,
            updated: t,
            status: "UNSHIPPED",
            items,
            refunded: false,
        };
        st.orders.push(o.clone());
        drop(st);
        // ChangeReason wording is UNCONFIRMED.
        self.notify(&o, "Order placed");
        Ok(json!({"order_id": id}))
    }

    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let idx = st
            .orders
            .iter()
            .position(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        if !matches!(st.orders[idx].status, "PENDING" | "UNSHIPPED") {
            return Err(SimError::InvalidState(format!(
                "order is {}",
                st.orders[idx].status
            )));
        }
        let t = now();
        st.orders[idx].status = "CANCELLED";
        st.orders[idx].updated = t;
        let o = st.orders[idx].clone();
        for i in &o.items {
            if let Some(l) = st.listings.get_mut(&i.sku) {
                if let Some(fa) = l.fa.as_mut() {
                    fa.quantity += i.quantity;
                }
                l.updated = t;
            }
        }
        drop(st);
        self.notify(&o, "Buyer Requested Cancel");
        Ok(())
    }

    /// Refunds carry no ORDER_CHANGE (they are no fulfillment status change); the restock is
    /// what the seller would do by hand.
    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let idx = st
            .orders
            .iter()
            .position(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        let o = &st.orders[idx];
        if o.status == "CANCELLED" || o.refunded {
            return Err(SimError::InvalidState(format!(
                "order is {}{}",
                o.status,
                if o.refunded { " and refunded" } else { "" }
            )));
        }
        let t = now();
        st.orders[idx].refunded = true;
        st.orders[idx].updated = t;
        let items = st.orders[idx].items.clone();
        if restock {
            for i in &items {
                if let Some(fa) = st.listings.get_mut(&i.sku).and_then(|l| l.fa.as_mut()) {
                    fa.quantity += i.quantity;
                }
            }
        }
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        let l = st
            .listings
            .get_mut(sku)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let fa = l.fa.get_or_insert(Availability {
            quantity: 0,
            lead_time: None,
            restock_date: None,
        });
        fa.quantity = quantity.max(0);
        l.updated = now();
        Ok(self.listing_view(l))
    }
}
