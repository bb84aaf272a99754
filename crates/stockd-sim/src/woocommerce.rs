//! WooCommerce REST API v3 simulator (note §2 and checklist §3 "WooCommerce").
//!
//! Emulated: `/wp-json/wc/v3/` with WooCommerce's authentication (§2.1): OAuth 1.0a one-legged
//! (HMAC-SHA1/HMAC-SHA256, ±15 min timestamp, nonce reuse) over plain HTTP, and — when
//! `https_terminated` — Basic auth and `consumer_key`/`consumer_secret` query parameters, with
//! the exact 401 codes, messages and `WWW-Authenticate`; key permissions; products (simple and
//! variable) and variations with the stock write rules of §2.2 (`inventory_delta`, unmanaged
//! stock clears the quantity, derived parent status, automatic out-of-stock); list endpoints
//! with `X-WP-Total`, `X-WP-TotalPages` and `Link`; batch endpoints with the 100-item limit and
//! per-item errors (§2.3); orders whose stock is reduced at `processing` (§2.4); `order.created`
//! / `order.updated` webhooks signed over the exact `wp_json_encode` bytes, without retries and
//! with auto-disable after repeated failures (§2.5); order refunds with line quantities and
//! restock (`refunds.rs`); an optional host rate limit.

mod refunds;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::common::{
    ct_eq, hmac_sha1, hmac_sha256, hmac_sha256_base64, lock, php_json_encode, retry_after_value,
    serve, sim_router, Counters, Delivery, Injected, NewListing, RetryPolicy, RunningSim,
    SimBackend, SimCore, SimError, SimListing,
};

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub consumer_key: String,
    pub consumer_secret: String,
    /// `read`, `write` or `read_write`.
    pub key_permissions: String,
    pub webhook_secret: String,
    pub webhook_url: Option<String>,
    /// Subscribed topics: `order.created`, `order.updated`.
    pub webhook_topics: Vec<String>,
    pub webhook_id: u64,
    pub webhook_timeout: Duration,
    /// Behave as if TLS were terminated in front: Basic auth and query keys are accepted.
    pub https_terminated: bool,
    /// Host rate limit (burst, requests per second); WooCommerce itself has none (§2.1).
    pub rate_limit: Option<(f64, f64)>,
    /// The site option `woocommerce_manage_stock` (§2.2 rule 1).
    pub manage_stock: bool,
    /// Site home URL used in `X-WC-Webhook-Source`; defaults to the listen address.
    pub home_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            consumer_key: "ck_sim_0123456789abcdef".into(),
            consumer_secret: "cs_sim_0123456789abcdef".into(),
            key_permissions: "read_write".into(),
            webhook_secret: "wc_sim_secret".into(),
            webhook_url: None,
            webhook_topics: vec!["order.created".into(), "order.updated".into()],
            webhook_id: 1,
            webhook_timeout: Duration::from_secs(60),
            https_terminated: false,
            rate_limit: None,
            manage_stock: true,
            home_url: None,
        }
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let home = config
        .home_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let sim = Arc::new(Woo {
        state: Arc::new(Mutex::new(WooState::new(&config))),
        config,
        core,
        home,
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = Router::new()
        .route("/wp-json/wc/v3/{*rest}", any(api_handler))
        .route("/wp-json/wc/v3", any(api_handler))
        .with_state(sim)
        .merge(sim_router(backend.clone()))
        .fallback(|| async {
            wc_error(
                StatusCode::NOT_FOUND,
                "rest_no_route",
                "No route was found matching the URL and request method.",
            )
        });
    serve(router, listener, backend)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Simple,
    Variable,
    Variation,
}

#[derive(Debug, Clone)]
struct Product {
    id: u64,
    name: String,
    kind: Kind,
    parent_id: u64,
    sku: String,
    manage_stock: bool,
    stock_quantity: Option<i64>,
    stock_status: String,
    backorders: String,
    low_stock_amount: Option<i64>,
    variations: Vec<u64>,
    created: String,
    modified: String,
}

#[derive(Debug, Clone)]
struct Line {
    id: u64,
    product_id: u64,
    variation_id: u64,
    sku: String,
    quantity: i64,
    name: String,
    /// Units restocked by refunds (meta `_restock_refunded_items`).
    restocked: i64,
}

#[derive(Debug, Clone)]
struct Order {
    id: u64,
    status: String,
    created: String,
    modified: String,
    lines: Vec<Line>,
    refunds: Vec<(u64, i64)>,
    key: String,
}

struct Webhook {
    url: String,
    status: String,
    failure_count: u32,
}

struct WooState {
    products: BTreeMap<u64, Product>,
    orders: BTreeMap<u64, Order>,
    refunds: BTreeMap<u64, refunds::SimRefund>,
    next_post: u64,
    next_line: u64,
    nonces: HashSet<String>,
    webhook: Option<Webhook>,
    bucket: Option<(f64, Instant)>,
}

impl WooState {
    fn new(c: &Config) -> WooState {
        WooState {
            products: BTreeMap::new(),
            orders: BTreeMap::new(),
            refunds: BTreeMap::new(),
            next_post: 100,
            next_line: 1,
            nonces: HashSet::new(),
            webhook: c.webhook_url.clone().map(|url| Webhook {
                url,
                status: "active".into(),
                failure_count: 0,
            }),
            bucket: c.rate_limit.map(|(burst, _)| (burst, Instant::now())),
        }
    }

    fn post_id(&mut self) -> u64 {
        self.next_post += 1;
        self.next_post
    }

    fn by_sku(&self, sku: &str) -> Option<&Product> {
        self.products
            .values()
            .find(|p| p.sku == sku && p.kind != Kind::Variable)
    }

    fn listing(&self, p: &Product) -> SimListing {
        let mut external = Map::new();
        if p.kind == Kind::Variation {
            external.insert("product_id".into(), json!(p.parent_id));
            external.insert("variation_id".into(), json!(p.id));
        } else {
            external.insert("product_id".into(), json!(p.id));
        }
        SimListing {
            sku: p.sku.clone(),
            external,
            quantity: p.stock_quantity.unwrap_or(0),
            availability: match p.stock_status.as_str() {
                "instock" => "in_stock",
                "onbackorder" => "backorder",
                _ => "out_of_stock",
            }
            .into(),
        }
    }

    /// A variable parent's status is derived from its children (§2.2 rule 6).
    fn sync_parent(&mut self, parent: u64) {
        let Some(p) = self.products.get(&parent) else {
            return;
        };
        let statuses: Vec<String> = p
            .variations
            .iter()
            .filter_map(|v| self.products.get(v).map(|c| c.stock_status.clone()))
            .collect();
        let status = if statuses.iter().any(|s| s == "instock") {
            "instock"
        } else if statuses.iter().any(|s| s == "onbackorder") {
            "onbackorder"
        } else {
            "outofstock"
        };
        if let Some(p) = self.products.get_mut(&parent) {
            p.stock_status = status.into();
        }
    }
}

/// Core's automatic status for managed stock (UNCONFIRMED, §2.2 rule 7): at or below 0 the
/// item is out of stock unless backorders are allowed.
fn auto_status(p: &mut Product) {
    if p.manage_stock && p.kind != Kind::Variable {
        let q = p.stock_quantity.unwrap_or(0);
        p.stock_status = if q > 0 {
            "instock".into()
        } else if p.backorders == "no" {
            "outofstock".into()
        } else {
            "onbackorder".into()
        };
    }
}

/// The `include` collection parameter (a comma list of ids, §2.1): only
/// those resources are listed, and the totals count only them.
fn include_ids(ctx: &Ctx) -> Option<std::collections::HashSet<u64>> {
    let raw = ctx
        .query
        .iter()
        .find(|(k, _)| k == "include" || k == "include[]")
        .map(|(_, v)| v.clone())?;
    Some(
        raw.split(',')
            .filter_map(|id| id.trim().parse::<u64>().ok())
            .collect(),
    )
}

struct Woo {
    config: Config,
    core: Arc<SimCore>,
    state: Arc<Mutex<WooState>>,
    home: String,
}

fn now_local() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn wc_json(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, php_json_encode(v)).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

fn wc_error(status: StatusCode, code: &str, message: &str) -> Response {
    wc_json(
        status,
        &json!({"code": code, "message": message, "data": {"status": status.as_u16()}}),
    )
}

fn err_obj(code: &str, message: &str, status: u16) -> Value {
    json!({"code": code, "message": message, "data": {"status": status}})
}

// ---------------------------------------------------------------------------------------------
// Authentication (§2.1, class-wc-rest-authentication.php)

/// PHP's `rawurlencode`: everything but `A-Za-z0-9-_.~` is percent-encoded.
pub(crate) fn rawurlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_as_space => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query string as PHP's `$_GET` sees it: one value per name, the last one
/// given, at the name's first position. WooCommerce signs and reads these, so
/// a client that repeats a parameter (the official JavaScript client sends each
/// query parameter twice and signs it once) is accepted by a real shop
/// (<https://www.php.net/manual/en/reserved.variables.get.php>).
fn parse_query(q: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(pair, true), String::new()),
        };
        match params.iter_mut().find(|(name, _)| *name == k) {
            Some(existing) => existing.1 = v,
            None => params.push((k, v)),
        }
    }
    params
}

/// `Authorization: OAuth k="v", ...` parameters.
fn parse_oauth_header(h: &str) -> Vec<(String, String)> {
    let Some(rest) = h.trim().strip_prefix("OAuth ") else {
        return vec![];
    };
    rest.split(',')
        .filter_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            Some((
                k.trim().to_string(),
                percent_decode(v.trim().trim_matches('"'), false),
            ))
        })
        .collect()
}

/// The string WooCommerce signs: METHOD & enc(base URL) & enc(sorted k=v pairs).
pub fn oauth_base_string(method: &str, base_url: &str, params: &[(String, String)]) -> String {
    let mut ps: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .collect();
    ps.sort_by(|a, b| a.0.cmp(&b.0));
    let pairs: Vec<String> = ps
        .iter()
        .map(|(k, v)| format!("{}={}", rawurlencode(k), rawurlencode(v)))
        .collect();
    format!(
        "{}&{}&{}",
        method.to_uppercase(),
        rawurlencode(base_url),
        rawurlencode(&pairs.join("&"))
    )
}

/// base64 signature for `HMAC-SHA1` or `HMAC-SHA256` with key `consumer_secret&`.
pub fn oauth_signature(
    method: &str,
    sig_method: &str,
    base_url: &str,
    params: &[(String, String)],
    consumer_secret: &str,
) -> Option<String> {
    let base = oauth_base_string(method, base_url, params);
    let key = format!("{consumer_secret}&");
    let raw = match sig_method {
        "HMAC-SHA1" => hmac_sha1(key.as_bytes(), base.as_bytes()).to_vec(),
        "HMAC-SHA256" => hmac_sha256(key.as_bytes(), base.as_bytes()),
        _ => return None,
    };
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

enum Auth {
    Ok,
    /// No credentials at all: the endpoint's own permission check answers.
    Anonymous,
    Fail(Response),
}

const BASIC_REALM: &str =
    "Basic realm=\"WooCommerce API. Use a consumer key in the username field and a consumer secret in the password field.\"";

fn auth_error(message: &str, basic: bool) -> Response {
    let mut r = wc_error(
        StatusCode::UNAUTHORIZED,
        "woocommerce_rest_authentication_error",
        message,
    );
    if basic {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static(BASIC_REALM));
    }
    r
}

impl Woo {
    fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
        query: &[(String, String)],
    ) -> Auth {
        let cfg = &self.config;
        if cfg.https_terminated {
            let q = |n: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            };
            let mut creds = match (q("consumer_key"), q("consumer_secret")) {
                (Some(k), Some(s)) => Some((k, s)),
                _ => None,
            };
            if creds.is_none() {
                creds = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    })
                    .filter(|(u, p)| !u.is_empty() && !p.is_empty());
            }
            if let Some((ck, cs)) = creds {
                // An unknown key is simply unauthenticated (§2.1).
                if ck == cfg.consumer_key {
                    if !ct_eq(cs.as_bytes(), cfg.consumer_secret.as_bytes()) {
                        return Auth::Fail(auth_error("Consumer secret is invalid.", true));
                    }
                    return self.permissions(method, true);
                }
            }
        }
        // OAuth 1.0a one-legged.
        let mut params: Vec<(String, String)> = query.to_vec();
        if let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            params.extend(parse_oauth_header(h));
        }
        let get = |n: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let names = [
            "oauth_consumer_key",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
        ];
        let missing: Vec<&str> = names.iter().copied().filter(|n| get(n).is_none()).collect();
        if missing.len() == names.len() {
            return Auth::Anonymous;
        }
        if !missing.is_empty() {
            let msg = if missing.len() == 1 {
                format!("Missing OAuth parameter {}", missing[0])
            } else {
                format!("Missing OAuth parameters {}", missing.join(", "))
            };
            return Auth::Fail(wc_error(
                StatusCode::UNAUTHORIZED,
                "woocommerce_rest_authentication_missing_parameter",
                &msg,
            ));
        }
        let ck = get("oauth_consumer_key").unwrap_or_default();
        if ck != cfg.consumer_key {
            return Auth::Fail(auth_error("Consumer key is invalid.", false));
        }
        let sig_method = get("oauth_signature_method").unwrap_or_default();
        if sig_method != "HMAC-SHA1" && sig_method != "HMAC-SHA256" {
            return Auth::Fail(auth_error(
                "Invalid signature - signature method is invalid.",
                false,
            ));
        }
        // `$_GET` turned '+' into ' '; WooCommerce turns it back before comparing.
        let given = get("oauth_signature").unwrap_or_default().replace(' ', "+");
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if cfg.https_terminated {
            "https"
        } else {
            "http"
        };
        let base_url = format!("{scheme}://{host}{path}");
        let sign_params: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "oauth_signature")
            .cloned()
            .collect();
        let expected = oauth_signature(
            method.as_str(),
            &sig_method,
            &base_url,
            &sign_params,
            &cfg.consumer_secret,
        )
        .unwrap_or_default();
        if !ct_eq(expected.as_bytes(), given.as_bytes()) {
            return Auth::Fail(auth_error(
                "Invalid signature - provided signature does not match.",
                false,
            ));
        }
        let ts: i64 = get("oauth_timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let now = chrono::Utc::now().timestamp();
        if ts < now - 15 * 60 || ts > now + 15 * 60 {
            return Auth::Fail(auth_error("Invalid timestamp.", false));
        }
        let nonce = get("oauth_nonce").unwrap_or_default();
        {
            let mut st = lock(&self.state);
            if !st.nonces.insert(nonce) {
                return Auth::Fail(auth_error(
                    "Invalid nonce - nonce has already been used.",
                    false,
                ));
            }
        }
        self.permissions(method, false)
    }

    fn permissions(&self, method: &Method, basic: bool) -> Auth {
        let p = self.config.key_permissions.as_str();
        let read = matches!(*method, Method::GET | Method::HEAD);
        if read && p == "write" {
            return Auth::Fail(auth_error(
                "The API key provided does not have read permissions.",
                basic,
            ));
        }
        if !read && p == "read" {
            return Auth::Fail(auth_error(
                "The API key provided does not have write permissions.",
                basic,
            ));
        }
        Auth::Ok
    }
}

// ---------------------------------------------------------------------------------------------
// Serialisation

impl Woo {
    fn product_json(&self, st: &WooState, p: &Product) -> Value {
        let base = format!("{}/wp-json/wc/v3", self.home);
        let mut v = json!({
            "id": p.id,
            "name": p.name,
            "date_created": p.created,
            "date_created_gmt": p.created,
            "date_modified": p.modified,
            "date_modified_gmt": p.modified,
            "status": "publish",
            "sku": p.sku,
            "price": "10.00",
            "regular_price": "10.00",
            "sale_price": "",
            "manage_stock": p.manage_stock,
            "stock_quantity": p.stock_quantity,
            "stock_status": p.stock_status,
            "backorders": p.backorders,
            "backorders_allowed": p.backorders != "no",
            "backordered": p.manage_stock && p.stock_quantity.unwrap_or(0) < 0,
            "low_stock_amount": p.low_stock_amount,
            "meta_data": [],
        });
        if p.kind == Kind::Variation {
            v["permalink"] = json!(format!("{}/?p={}", self.home, p.id));
            v["attributes"] = json!([{"id": 0, "name": "Variant", "option": p.sku}]);
            v["_links"] = json!({
                "self": [{"href": format!("{base}/products/{}/variations/{}", p.parent_id, p.id)}],
                "collection": [{"href": format!("{base}/products/{}/variations", p.parent_id)}],
                "up": [{"href": format!("{base}/products/{}", p.parent_id)}],
            });
        } else {
            v["slug"] = json!(p.name.to_lowercase().replace(' ', "-"));
            v["permalink"] = json!(format!(
                "{}/product/{}/",
                self.home,
                p.name.to_lowercase().replace(' ', "-")
            ));
            v["type"] = json!(if p.kind == Kind::Variable {
                "variable"
            } else {
                "simple"
            });
            v["parent_id"] = json!(0);
            v["variations"] = json!(p.variations);
            v["attributes"] = json!([]);
            v["_links"] = json!({
                "self": [{"href": format!("{base}/products/{}", p.id)}],
                "collection": [{"href": format!("{base}/products")}],
            });
        }
        let _ = st;
        v
    }

    fn order_json(&self, o: &Order) -> Value {
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|l| {
                let total = format!("{}.00", l.quantity * 10);
                json!({
                    "id": l.id,
                    "name": l.name,
                    "product_id": l.product_id,
                    "variation_id": l.variation_id,
                    "quantity": l.quantity,
                    "tax_class": "",
                    "subtotal": total,
                    "subtotal_tax": "0.00",
                    "total": total,
                    "total_tax": "0.00",
                    "taxes": [],
                    "meta_data": if l.restocked > 0 {
                        json!([{"id": l.id + 20_000, "key": "_restock_refunded_items", "value": l.restocked.to_string()}])
                    } else {
                        json!([])
                    },
                    "sku": l.sku,
                    "price": 10,
                })
            })
            .collect();
        let total: i64 = o.lines.iter().map(|l| l.quantity * 10).sum();
        json!({
            "id": o.id,
            "parent_id": 0,
            "number": o.id.to_string(),
            "order_key": o.key,
            "created_via": "checkout",
            "status": o.status,
            "currency": "EUR",
            "date_created": o.created,
            "date_created_gmt": o.created,
            "date_modified": o.modified,
            "date_modified_gmt": o.modified,
            "total": format!("{total}.00"),
            "total_tax": "0.00",
            "customer_id": 0,
            "billing": {"first_name": "Sim", "last_name": "Customer", "email": "customer@example.com"},
            "payment_method": "bacs",
            "set_paid": true,
            "line_items": lines,
            "refunds": o.refunds.iter().map(|(id, t)| json!({"id": id, "reason": "", "total": format!("-{t}.00")})).collect::<Vec<_>>(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Stock write rules (§2.2)

/// Apply a product/variation update body; `Err` is (code, message, status).
fn apply_update(
    p: &mut Product,
    body: &Map<String, Value>,
    site_manage_stock: bool,
) -> Result<(), (String, String, u16)> {
    let invalid = |param: &str, why: &str| {
        Err((
            "rest_invalid_param".to_string(),
            format!("Invalid parameter(s): {param} ({why})"),
            400u16,
        ))
    };
    // Type checks like the REST schema's.
    if let Some(v) = body.get("stock_quantity") {
        if !v.is_null() && v.as_i64().is_none() {
            return invalid(
                "stock_quantity",
                "stock_quantity is not of type integer,null.",
            );
        }
    }
    if let Some(v) = body.get("inventory_delta") {
        if v.as_i64().is_none() {
            return invalid("inventory_delta", "inventory_delta is not of type integer.");
        }
    }
    if let Some(v) = body.get("manage_stock") {
        if !v.is_boolean() {
            return invalid("manage_stock", "manage_stock is not of type boolean.");
        }
    }
    if let Some(v) = body.get("stock_status") {
        if !matches!(v.as_str(), Some("instock" | "outofstock" | "onbackorder")) {
            return invalid(
                "stock_status",
                "stock_status is not one of instock, outofstock, and onbackorder.",
            );
        }
    }
    if let Some(v) = body.get("backorders") {
        if !matches!(v.as_str(), Some("no" | "notify" | "yes")) {
            return invalid(
                "backorders",
                "backorders is not one of no, notify, and yes.",
            );
        }
    }
    if let Some(v) = body.get("name").and_then(Value::as_str) {
        p.name = v.to_string();
    }
    let req_status = body
        .get("stock_status")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !site_manage_stock {
        if p.kind != Kind::Variable {
            if let Some(s) = req_status {
                p.stock_status = s;
            }
        }
        return Ok(());
    }
    if let Some(m) = body.get("manage_stock").and_then(Value::as_bool) {
        p.manage_stock = m;
    }
    if let Some(b) = body.get("backorders").and_then(Value::as_str) {
        p.backorders = b.to_string();
    }
    if let Some(v) = body.get("low_stock_amount") {
        p.low_stock_amount = v.as_i64();
    }
    if p.manage_stock {
        match body.get("stock_quantity") {
            Some(v) if !v.is_null() => p.stock_quantity = v.as_i64(),
            Some(_) => {}
            None => {
                if let Some(d) = body.get("inventory_delta").and_then(Value::as_i64) {
                    p.stock_quantity = Some(p.stock_quantity.unwrap_or(0) + d);
                }
            }
        }
        if p.stock_quantity.is_none() {
            p.stock_quantity = Some(0);
        }
        if p.kind != Kind::Variable {
            if let Some(s) = req_status {
                p.stock_status = s;
            }
        }
        auto_status(p);
    } else {
        p.stock_quantity = None;
        if let Some(s) = req_status {
            if p.kind != Kind::Variable {
                p.stock_status = s;
            }
        }
    }
    p.modified = now_local();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Ctx {
    method: Method,
    segs: Vec<String>,
    query: Vec<(String, String)>,
    body: Value,
    path: String,
}

async fn api_handler(AxState(sim): AxState<Arc<Woo>>, req: Request) -> Response {
    if let Some(inj) = sim.core.intercept().await {
        return match inj {
            // Shape chosen: WordPress's REST error envelope; an outage body is host-dependent.
            Injected::Outage => wc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service Unavailable",
            ),
            Injected::ServerError => wc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                "<p>There has been a critical error on this website.</p>",
            ),
            Injected::Throttle { retry_after } => too_many(retry_after.unwrap_or(1.0)),
        };
    }
    if let Some(wait) = sim.rate_limited() {
        Counters::add(&sim.core.counters.rate_limit_violations, 1);
        return too_many(wait);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let headers = req.headers().clone();
    let auth = sim.authenticate(&method, &headers, &path, &query);
    let body_bytes = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return wc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "rest_payload_too_large",
                "Payload too large.",
            )
        }
    };
    let body: Value = if body_bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body_bytes) {
            Ok(v) => v,
            Err(_) => {
                return wc_error(
                    StatusCode::BAD_REQUEST,
                    "rest_invalid_json",
                    "Invalid JSON body passed.",
                )
            }
        }
    };
    let segs: Vec<String> = path
        .trim_start_matches("/wp-json/wc/v3")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let ctx = Ctx {
        method,
        segs,
        query,
        body,
        path,
    };
    match auth {
        Auth::Fail(r) => r,
        Auth::Anonymous => anonymous_denied(&ctx),
        Auth::Ok => sim.route(&ctx),
    }
}

fn too_many(secs: f64) -> Response {
    // Host-level limit; code and message UNCONFIRMED (WooCommerce core has no limit, §2.1).
    let mut r = wc_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rest_too_many_requests",
        "Too many requests.",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs.ceil())) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// An unauthenticated request fails the endpoint's permission check (code UNCONFIRMED, §2.1).
fn anonymous_denied(ctx: &Ctx) -> Response {
    let is_batch = ctx.segs.last().map(String::as_str) == Some("batch");
    let is_item = ctx.segs.last().is_some_and(|s| s.parse::<u64>().is_ok());
    let (code, msg) = if is_batch {
        (
            "woocommerce_rest_cannot_batch",
            "Sorry, you are not allowed to batch manipulate this resource.",
        )
    } else if matches!(ctx.method, Method::GET | Method::HEAD) {
        if is_item {
            (
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot view this resource.",
            )
        } else {
            (
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            )
        }
    } else if ctx.method == Method::DELETE {
        (
            "woocommerce_rest_cannot_delete",
            "Sorry, you are not allowed to delete this resource.",
        )
    } else if is_item {
        (
            "woocommerce_rest_cannot_edit",
            "Sorry, you are not allowed to edit this resource.",
        )
    } else {
        (
            "woocommerce_rest_cannot_create",
            "Sorry, you are not allowed to create resources.",
        )
    };
    wc_error(StatusCode::UNAUTHORIZED, code, msg)
}

const BATCH_LIMIT: usize = 100;

impl Woo {
    fn rate_limited(&self) -> Option<f64> {
        let (burst, rate) = self.config.rate_limit?;
        let mut st = lock(&self.state);
        let (level, at) = st.bucket.get_or_insert((burst, Instant::now()));
        let now = Instant::now();
        *level = (*level + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            None
        } else {
            Some(((1.0 - *level) / rate.max(1e-9)).max(0.001))
        }
    }

    fn route(&self, ctx: &Ctx) -> Response {
        let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
        let m = &ctx.method;
        let write = matches!(*m, Method::POST | Method::PUT | Method::PATCH);
        match segs.as_slice() {
            ["products"] if *m == Method::GET => self.list_products(ctx),
            ["products", "batch"]
                if *m == Method::POST || *m == Method::PUT || *m == Method::PATCH =>
            {
                self.batch(ctx, None)
            }
            ["products", id] if *m == Method::GET => self.get_product(id),
            ["products", id] if write => self.update_product(id, ctx),
            ["products", pid, "variations"] if *m == Method::GET => self.list_variations(pid, ctx),
            ["products", pid, "variations", "batch"] if write => match pid.parse::<u64>() {
                Ok(p) => self.batch(ctx, Some(p)),
                Err(_) => invalid_id(),
            },
            ["products", pid, "variations", id] if *m == Method::GET => self.get_variation(pid, id),
            ["products", pid, "variations", id] if write => self.update_variation(pid, id, ctx),
            ["orders"] if *m == Method::GET => self.list_orders(ctx),
            ["orders", id] if *m == Method::GET => {
                let st = lock(&self.state);
                match id.parse::<u64>().ok().and_then(|i| st.orders.get(&i)) {
                    Some(o) => wc_json(StatusCode::OK, &self.order_json(o)),
                    None => wc_error(
                        StatusCode::NOT_FOUND,
                        "woocommerce_rest_shop_order_invalid_id",
                        "Invalid ID.",
                    ),
                }
            }
            ["orders", id] if write => self.update_order(id, ctx),
            ["orders", id, "refunds"] if *m == Method::GET => self.list_refunds(id, ctx),
            ["orders", id, "refunds"] if *m == Method::POST => self.create_refund(id, ctx),
            ["orders", id, "refunds", rid] if *m == Method::GET => self.get_refund(id, rid),
            [] if *m == Method::GET => {
                wc_json(StatusCode::OK, &json!({"namespace": "wc/v3", "routes": {}}))
            }
            _ => wc_error(
                StatusCode::NOT_FOUND,
                "rest_no_route",
                "No route was found matching the URL and request method.",
            ),
        }
    }

    fn paginate(&self, ctx: &Ctx, items: Vec<Value>) -> Response {
        let q = |n: &str| {
            ctx.query
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let per_page = match q("per_page").map(|v| v.parse::<i64>()) {
            None => 10,
            Some(Ok(n)) if (1..=100).contains(&n) => n as usize,
            Some(_) => {
                // The 100 maximum is UNCONFIRMED (§2.1); WordPress's standard collection limit.
                return wc_json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": "rest_invalid_param", "message": "Invalid parameter(s): per_page",
                        "data": {"status": 400, "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}}}),
                );
            }
        };
        let page = match q("page").map(|v| v.parse::<usize>()) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => {
                return wc_json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": "rest_invalid_param", "message": "Invalid parameter(s): page",
                        "data": {"status": 400, "params": {"page": "page must be greater than or equal to 1"}}}),
                )
            }
        };
        let offset = q("offset").and_then(|v| v.parse::<usize>().ok());
        let total = items.len();
        let total_pages = total.div_ceil(per_page);
        let start = offset.unwrap_or((page - 1) * per_page).min(total);
        let end = (start + per_page).min(total);
        let page_items: Vec<Value> = items[start..end].to_vec();
        let mut r = wc_json(StatusCode::OK, &Value::Array(page_items));
        let h = r.headers_mut();
        h.insert("x-wp-total", HeaderValue::from(total as u64));
        h.insert("x-wp-totalpages", HeaderValue::from(total_pages as u64));
        // WooCommerce's collection controllers (WC_REST_CRUD_Controller::get_items)
        // send only `prev` and `next`, each the request's own query with `page`
        // replaced (add_query_arg over get_query_params), so every parameter the
        // client sent comes back, credentials included.
        let link = |p: usize| {
            let mut qs: Vec<String> = Vec::new();
            let mut page_set = false;
            for (k, v) in &ctx.query {
                if k == "page" {
                    qs.push(format!("page={p}"));
                    page_set = true;
                } else {
                    qs.push(format!("{}={}", rawurlencode(k), rawurlencode(v)));
                }
            }
            if !page_set {
                qs.push(format!("page={p}"));
            }
            format!("<{}{}?{}>", self.home, ctx.path, qs.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!(
                "{}; rel=\"prev\"",
                link((page - 1).min(total_pages.max(1)))
            ));
        }
        if page < total_pages {
            links.push(format!("{}; rel=\"next\"", link(page + 1)));
        }
        if !links.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
                h.insert("link", v);
            }
        }
        r
    }

    fn list_products(&self, ctx: &Ctx) -> Response {
        let q = |n: &str| {
            ctx.query
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let st = lock(&self.state);
        let sku = q("sku");
        let ty = q("type");
        let include = include_ids(ctx);
        // Newest first, WooCommerce's default order (date desc).
        let items: Vec<Value> = st
            .products
            .values()
            .rev()
            .filter(|p| p.kind != Kind::Variation)
            .filter(|p| include.as_ref().is_none_or(|ids| ids.contains(&p.id)))
            .filter(|p| {
                sku.as_ref()
                    .is_none_or(|s| s.split(',').any(|x| x == p.sku))
            })
            .filter(|p| {
                ty.as_deref().is_none_or(|t| {
                    t == if p.kind == Kind::Variable {
                        "variable"
                    } else {
                        "simple"
                    }
                })
            })
            .map(|p| self.product_json(&st, p))
            .collect();
        drop(st);
        self.paginate(ctx, items)
    }

    fn get_product(&self, id: &str) -> Response {
        let st = lock(&self.state);
        match id.parse::<u64>().ok().and_then(|i| st.products.get(&i)) {
            Some(p) if p.kind == Kind::Variation => variation_on_products(),
            Some(p) => wc_json(StatusCode::OK, &self.product_json(&st, p)),
            None => invalid_id(),
        }
    }

    fn update_product(&self, id: &str, ctx: &Ctx) -> Response {
        let Some(body) = ctx
            .body
            .as_object()
            .cloned()
            .or_else(|| ctx.body.is_null().then(Map::new))
        else {
            return wc_error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_json",
                "Invalid JSON body passed.",
            );
        };
        let mut st = lock(&self.state);
        let Some(pid) = id
            .parse::<u64>()
            .ok()
            .filter(|i| st.products.contains_key(i))
        else {
            return invalid_id();
        };
        match self.update_in(&mut st, pid, None, &body) {
            Ok(v) => wc_json(StatusCode::OK, &v),
            Err(e) => wc_json(
                StatusCode::from_u16(e["data"]["status"].as_u64().unwrap_or(400) as u16)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                &e,
            ),
        }
    }

    /// Update one product (parent None) or variation (parent Some); returns the resource or
    /// a WooCommerce error object.
    fn update_in(
        &self,
        st: &mut WooState,
        id: u64,
        parent: Option<u64>,
        body: &Map<String, Value>,
    ) -> Result<Value, Value> {
        let Some(p) = st.products.get(&id) else {
            return Err(match parent {
                None => err_obj("woocommerce_rest_product_invalid_id", "Invalid ID.", 400),
                Some(_) => err_obj(
                    "woocommerce_rest_product_variation_invalid_id",
                    "Invalid ID.",
                    400,
                ),
            });
        };
        match parent {
            None if p.kind == Kind::Variation => {
                return Err(err_obj(
                    "woocommerce_rest_invalid_product_id",
                    "To manipulate product variations you should use the /products/<product_id>/variations/<id> endpoint.",
                    404,
                ))
            }
            Some(par) if p.kind != Kind::Variation || p.parent_id != par => {
                return Err(err_obj("woocommerce_rest_product_variation_invalid_id", "Invalid ID.", 400))
            }
            _ => {}
        }
        if self.core.rejects_sku(&p.sku) {
            // Injected permanent per-item failure (code chosen: a permission-style refusal).
            return Err(err_obj(
                "woocommerce_rest_cannot_edit",
                "Sorry, you are not allowed to edit this resource.",
                403,
            ));
        }
        if let Some(new_sku) = body.get("sku").and_then(Value::as_str) {
            if !new_sku.is_empty() && st.products.values().any(|o| o.sku == new_sku && o.id != id) {
                return Err(err_obj(
                    "product_invalid_sku",
                    "Invalid or duplicated SKU.",
                    400,
                ));
            }
        }
        let before = st.products[&id].stock_quantity;
        let mut p = st.products[&id].clone();
        if let Err((code, msg, status)) = apply_update(&mut p, body, self.config.manage_stock) {
            return Err(err_obj(&code, &msg, status));
        }
        if let Some(s) = body.get("sku").and_then(Value::as_str) {
            p.sku = s.to_string();
        }
        let parent_id = p.parent_id;
        let is_var = p.kind == Kind::Variation;
        st.products.insert(id, p);
        if is_var {
            st.sync_parent(parent_id);
        }
        if before != st.products[&id].stock_quantity
            || body.contains_key("stock_quantity")
            || body.contains_key("inventory_delta")
        {
            Counters::add(&self.core.counters.updates_applied, 1);
        }
        Ok(self.product_json(st, &st.products[&id]))
    }

    fn list_variations(&self, pid: &str, ctx: &Ctx) -> Response {
        let st = lock(&self.state);
        let Some(parent) = pid
            .parse::<u64>()
            .ok()
            .and_then(|i| st.products.get(&i))
            .filter(|p| p.kind != Kind::Variation)
        else {
            return invalid_id();
        };
        let include = include_ids(ctx);
        let items: Vec<Value> = parent
            .variations
            .iter()
            .rev()
            .filter(|v| include.as_ref().is_none_or(|ids| ids.contains(v)))
            .filter_map(|v| st.products.get(v))
            .map(|v| self.product_json(&st, v))
            .collect();
        drop(st);
        self.paginate(ctx, items)
    }

    fn get_variation(&self, pid: &str, id: &str) -> Response {
        let st = lock(&self.state);
        let parent = pid.parse::<u64>().ok();
        match id.parse::<u64>().ok().and_then(|i| st.products.get(&i)) {
            Some(v) if v.kind == Kind::Variation && Some(v.parent_id) == parent => {
                wc_json(StatusCode::OK, &self.product_json(&st, v))
            }
            _ => wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_product_variation_invalid_id",
                "Invalid ID.",
            ),
        }
    }

    fn update_variation(&self, pid: &str, id: &str, ctx: &Ctx) -> Response {
        let Some(body) = ctx
            .body
            .as_object()
            .cloned()
            .or_else(|| ctx.body.is_null().then(Map::new))
        else {
            return wc_error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_json",
                "Invalid JSON body passed.",
            );
        };
        let (Ok(p), Ok(i)) = (pid.parse::<u64>(), id.parse::<u64>()) else {
            return wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_product_variation_invalid_id",
                "Invalid ID.",
            );
        };
        let mut st = lock(&self.state);
        match self.update_in(&mut st, i, Some(p), &body) {
            Ok(v) => wc_json(StatusCode::OK, &v),
            Err(mut e) => {
                e["data"]["status"] = json!(404);
                wc_json(StatusCode::NOT_FOUND, &e)
            }
        }
    }

    fn batch(&self, ctx: &Ctx, parent: Option<u64>) -> Response {
        let empty = Map::new();
        let body = ctx.body.as_object().unwrap_or(&empty);
        let arr = |k: &str| body.get(k).and_then(Value::as_array).cloned();
        let (create, update, delete) = (arr("create"), arr("update"), arr("delete"));
        let n = create.as_ref().map_or(0, Vec::len)
            + update.as_ref().map_or(0, Vec::len)
            + delete.as_ref().map_or(0, Vec::len);
        if n > BATCH_LIMIT {
            return wc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "woocommerce_rest_request_entity_too_large",
                &format!("Unable to accept more than {BATCH_LIMIT} items for this request."),
            );
        }
        let mut st = lock(&self.state);
        if let Some(p) = parent {
            if !st
                .products
                .get(&p)
                .is_some_and(|x| x.kind == Kind::Variable)
            {
                return invalid_id();
            }
        }
        let mut out = Map::new();
        if let Some(items) = create {
            let mut res = Vec::new();
            for it in items {
                res.push(
                    match self.create_in(&mut st, it.as_object().unwrap_or(&empty), parent) {
                        Ok(v) => v,
                        Err(e) => json!({"id": 0, "error": e}),
                    },
                );
            }
            out.insert("create".into(), Value::Array(res));
        }
        if let Some(items) = update {
            let mut res = Vec::new();
            for it in items {
                let obj = it.as_object().cloned().unwrap_or_default();
                let id = obj.get("id").and_then(Value::as_u64).unwrap_or(0);
                res.push(match self.update_in(&mut st, id, parent, &obj) {
                    Ok(v) => v,
                    Err(e) => json!({"id": id, "error": e}),
                });
            }
            out.insert("update".into(), Value::Array(res));
        }
        if let Some(items) = delete {
            let mut res = Vec::new();
            for it in items {
                let id = it
                    .as_u64()
                    .or_else(|| it.get("id").and_then(Value::as_u64))
                    .unwrap_or(0);
                // Batch deletes use force=true (§2.3).
                let ok = st.products.get(&id).is_some_and(|p| match parent {
                    None => p.kind != Kind::Variation,
                    Some(par) => p.kind == Kind::Variation && p.parent_id == par,
                });
                if ok {
                    let v = self.product_json(&st, &st.products[&id]);
                    let removed = st.products.remove(&id);
                    if let Some(r) = removed {
                        for c in r.variations {
                            st.products.remove(&c);
                        }
                        if r.kind == Kind::Variation {
                            if let Some(par) = st.products.get_mut(&r.parent_id) {
                                par.variations.retain(|x| *x != id);
                            }
                            st.sync_parent(r.parent_id);
                        }
                    }
                    res.push(v);
                } else {
                    res.push(json!({"id": id, "error": err_obj("woocommerce_rest_product_invalid_id", "Invalid ID.", 400)}));
                }
            }
            out.insert("delete".into(), Value::Array(res));
        }
        wc_json(StatusCode::OK, &Value::Object(out))
    }

    fn create_in(
        &self,
        st: &mut WooState,
        body: &Map<String, Value>,
        parent: Option<u64>,
    ) -> Result<Value, Value> {
        let sku = body
            .get("sku")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !sku.is_empty() && st.products.values().any(|p| p.sku == sku) {
            return Err(err_obj(
                "product_invalid_sku",
                "Invalid or duplicated SKU.",
                400,
            ));
        }
        let kind = match (parent, body.get("type").and_then(Value::as_str)) {
            (Some(_), _) => Kind::Variation,
            (None, Some("variable")) => Kind::Variable,
            (None, None | Some("simple")) => Kind::Simple,
            (None, Some(_)) => {
                return Err(err_obj(
                    "woocommerce_rest_invalid_product_type",
                    "Invalid product type.",
                    400,
                ))
            }
        };
        let id = st.post_id();
        let now = now_local();
        let mut p = Product {
            id,
            name: body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&sku)
                .to_string(),
            kind,
            parent_id: parent.unwrap_or(0),
            sku,
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".into(),
            backorders: "no".into(),
            low_stock_amount: None,
            variations: vec![],
            created: now.clone(),
            modified: now,
        };
        if let Err((code, msg, status)) = apply_update(&mut p, body, self.config.manage_stock) {
            st.next_post -= 1;
            return Err(err_obj(&code, &msg, status));
        }
        st.products.insert(id, p);
        if let Some(par) = parent {
            if let Some(pp) = st.products.get_mut(&par) {
                pp.variations.push(id);
            }
            st.sync_parent(par);
        }
        Ok(self.product_json(st, &st.products[&id]))
    }

    fn list_orders(&self, ctx: &Ctx) -> Response {
        let status = ctx
            .query
            .iter()
            .find(|(k, _)| k == "status")
            .map(|(_, v)| v.clone());
        let st = lock(&self.state);
        let items: Vec<Value> = st
            .orders
            .values()
            .rev()
            .filter(|o| {
                status
                    .as_ref()
                    .is_none_or(|s| s == "any" || s.split(',').any(|x| x == o.status))
            })
            .map(|o| self.order_json(o))
            .collect();
        drop(st);
        self.paginate(ctx, items)
    }

    fn update_order(&self, id: &str, ctx: &Ctx) -> Response {
        let Some(oid) = id.parse::<u64>().ok() else {
            return wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_shop_order_invalid_id",
                "Invalid ID.",
            );
        };
        let status = ctx
            .body
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string);
        let result = match status.as_deref() {
            Some("cancelled") => self.cancel(&oid.to_string()),
            Some("refunded") => self.refund(&oid.to_string(), true),
            Some(s) => self.set_status(oid, s),
            None => Ok(()),
        };
        match result {
            Err(SimError::UnknownOrder(_)) => wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_shop_order_invalid_id",
                "Invalid ID.",
            ),
            Err(e) => wc_error(
                StatusCode::BAD_REQUEST,
                "woocommerce_rest_shop_order_invalid_status",
                &e.to_string(),
            ),
            Ok(()) => {
                let st = lock(&self.state);
                match st.orders.get(&oid) {
                    Some(o) => wc_json(StatusCode::OK, &self.order_json(o)),
                    None => wc_error(
                        StatusCode::NOT_FOUND,
                        "woocommerce_rest_shop_order_invalid_id",
                        "Invalid ID.",
                    ),
                }
            }
        }
    }

    fn set_status(&self, oid: u64, s: &str) -> Result<(), SimError> {
        const OK: &[&str] = &["pending", "processing", "on-hold", "completed", "failed"];
        if !OK.contains(&s) {
            return Err(SimError::BadRequest(format!("status {s}")));
        }
        let mut st = lock(&self.state);
        let o = st
            .orders
            .get_mut(&oid)
            .ok_or_else(|| SimError::UnknownOrder(oid.to_string()))?;
        if o.status == s {
            return Ok(());
        }
        o.status = s.to_string();
        o.modified = now_local();
        let o = o.clone();
        self.emit(&mut st, "order.updated", &o);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Webhooks (§2.5)

    fn emit(&self, st: &mut WooState, topic: &str, order: &Order) {
        if !self.config.webhook_topics.iter().any(|t| t == topic) {
            return;
        }
        let Some(wh) = st.webhook.as_ref().filter(|w| w.status == "active") else {
            return;
        };
        let url = wh.url.clone();
        let body = php_json_encode(&self.order_json(order))
            .trim()
            .as_bytes()
            .to_vec();
        let sig = hmac_sha256_base64(self.config.webhook_secret.as_bytes(), &body);
        let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
        // wp_hash(webhook_id . time()): the same within one second, so ids can collide.
        let secs = chrono::Utc::now().timestamp();
        let delivery_id = {
            let h = hmac_sha256(
                b"wp_salt_sim",
                format!("{}{}", self.config.webhook_id, secs).as_bytes(),
            );
            h.iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (
                "User-Agent".into(),
                "WooCommerce/9.8.0 Hookshot (WordPress/6.8.0)".into(),
            ),
            ("X-WC-Webhook-Source".into(), format!("{}/", self.home)),
            ("X-WC-Webhook-Topic".into(), topic.to_string()),
            ("X-WC-Webhook-Resource".into(), resource.to_string()),
            ("X-WC-Webhook-Event".into(), event.to_string()),
            ("X-WC-Webhook-Signature".into(), sig),
            ("X-WC-Webhook-ID".into(), self.config.webhook_id.to_string()),
            ("X-WC-Webhook-Delivery-ID".into(), delivery_id),
        ];
        let state = Arc::clone(&self.state);
        let done: crate::common::DoneHook = Box::new(move |ok: bool| {
            let mut st = lock(&state);
            if let Some(w) = st.webhook.as_mut() {
                if ok {
                    w.failure_count = 0;
                } else if w.failure_count > 5 {
                    // In code: disabled at the failure after failure_count exceeded 5.
                    w.status = "disabled".into();
                } else {
                    w.failure_count += 1;
                }
            }
        });
        self.core.send_webhook(
            Delivery { url, headers, body },
            RetryPolicy {
                delays: vec![],
                max_success_status: 302,
                timeout: self.config.webhook_timeout,
            },
            Some(done),
        );
    }

    fn sellable(p: &Product, qty: i64) -> bool {
        if p.stock_status == "outofstock" {
            return false;
        }
        !(p.manage_stock && p.backorders == "no" && p.stock_quantity.unwrap_or(0) < qty)
    }

    /// Move stock by `sign × qty` for every line (−1 reduce, +1 restore).
    fn move_stock(st: &mut WooState, lines: &[Line], sign: i64) {
        let mut parents = Vec::new();
        for l in lines {
            let id = if l.variation_id != 0 {
                l.variation_id
            } else {
                l.product_id
            };
            if let Some(p) = st.products.get_mut(&id) {
                if p.manage_stock {
                    p.stock_quantity = Some(p.stock_quantity.unwrap_or(0) + sign * l.quantity);
                    auto_status(p);
                    p.modified = now_local();
                }
                if p.kind == Kind::Variation {
                    parents.push(p.parent_id);
                }
            }
        }
        for p in parents {
            st.sync_parent(p);
        }
    }
}

fn invalid_id() -> Response {
    wc_error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_product_invalid_id",
        "Invalid ID.",
    )
}

fn variation_on_products() -> Response {
    wc_error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_invalid_product_id",
        "To manipulate product variations you should use the /products/<product_id>/variations/<id> endpoint.",
    )
}

impl SimBackend for Woo {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let st = lock(&self.state);
        st.products
            .values()
            .filter(|p| p.kind != Kind::Variable)
            .map(|p| st.listing(p))
            .collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        let now = now_local();
        let mut parent: Option<u64> = None;
        let mut out = Vec::new();
        for n in items {
            if n.variation && parent.is_none() {
                let id = st.post_id();
                st.products.insert(
                    id,
                    Product {
                        id,
                        name: format!("Variable product {id}"),
                        kind: Kind::Variable,
                        parent_id: 0,
                        sku: String::new(),
                        manage_stock: false,
                        stock_quantity: None,
                        stock_status: "instock".into(),
                        backorders: "no".into(),
                        low_stock_amount: None,
                        variations: vec![],
                        created: now.clone(),
                        modified: now.clone(),
                    },
                );
                parent = Some(id);
            }
            let id = st.post_id();
            let mut p = Product {
                id,
                name: format!("Product {}", n.sku),
                kind: if n.variation {
                    Kind::Variation
                } else {
                    Kind::Simple
                },
                parent_id: if n.variation { parent.unwrap_or(0) } else { 0 },
                sku: n.sku.clone(),
                manage_stock: true,
                stock_quantity: Some(n.quantity),
                stock_status: "instock".into(),
                backorders: "no".into(),
                low_stock_amount: None,
                variations: vec![],
                created: now.clone(),
                modified: now.clone(),
            };
            auto_status(&mut p);
            out.push(st.listing(&p));
            if n.variation {
                if let Some(pp) = parent.and_then(|x| st.products.get_mut(&x)) {
                    pp.variations.push(id);
                }
            }
            st.products.insert(id, p);
        }
        if let Some(p) = parent {
            st.sync_parent(p);
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        let mut want: HashMap<u64, i64> = HashMap::new();
        for (sku, qty) in lines {
            let p = st
                .by_sku(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            *want.entry(p.id).or_default() += qty;
        }
        for (id, qty) in &want {
            if !Self::sellable(&st.products[id], *qty) {
                return Err(SimError::NotAvailable);
            }
        }
        let mut order_lines = Vec::new();
        for (sku, qty) in lines {
            let p = st
                .by_sku(sku)
                .cloned()
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            let line_id = st.next_line;
            st.next_line += 1;
            let (product_id, variation_id) = if p.kind == Kind::Variation {
                (p.parent_id, p.id)
            } else {
                (p.id, 0)
            };
            order_lines.push(Line {
                id: line_id,
                product_id,
                variation_id,
                sku: sku.clone(),
                quantity: *qty,
                name: p.name.clone(),
                restocked: 0,
            });
        }
        let id = st.post_id();
        let now = now_local();
        let key = format!("wc_order_{:013x}", self.core.rand_u64() >> 12);
        let order = Order {
            id,
            status: "processing".into(),
            created: now.clone(),
            modified: now,
            lines: order_lines,
            refunds: vec![],
            key,
        };
        // set_paid → processing reduces stock (§2.4; the exact trigger is UNCONFIRMED).
        Self::move_stock(&mut st, &order.lines, -1);
        st.orders.insert(id, order.clone());
        self.emit(&mut st, "order.created", &order);
        let body = self.order_json(&order);
        Ok(
            json!({"order_id": id.to_string(), "status": "processing", "line_items": body["line_items"]}),
        )
    }

    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let id: u64 = order_id
            .parse()
            .map_err(|_| SimError::UnknownOrder(order_id.into()))?;
        let o = st
            .orders
            .get(&id)
            .cloned()
            .ok_or_else(|| SimError::UnknownOrder(order_id.into()))?;
        if matches!(o.status.as_str(), "cancelled" | "refunded") {
            return Err(SimError::InvalidState(format!("order is {}", o.status)));
        }
        let reduced = matches!(o.status.as_str(), "processing" | "completed" | "on-hold");
        if reduced {
            Self::move_stock(&mut st, &o.lines, 1);
        }
        let o = st.orders.get_mut(&id).expect("exists");
        o.status = "cancelled".into();
        o.modified = now_local();
        let o = o.clone();
        self.emit(&mut st, "order.updated", &o);
        Ok(())
    }

    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let id: u64 = order_id
            .parse()
            .map_err(|_| SimError::UnknownOrder(order_id.into()))?;
        let o = st
            .orders
            .get(&id)
            .cloned()
            .ok_or_else(|| SimError::UnknownOrder(order_id.into()))?;
        if matches!(o.status.as_str(), "cancelled" | "refunded") {
            return Err(SimError::InvalidState(format!("order is {}", o.status)));
        }
        if restock {
            Self::move_stock(&mut st, &o.lines, 1);
        }
        let refund_id = st.post_id();
        let total: i64 = o.lines.iter().map(|l| l.quantity * 10).sum();
        refunds::record_amount_only(&mut st, id, refund_id, total);
        let o = st.orders.get_mut(&id).expect("exists");
        o.status = "refunded".into();
        o.refunds.push((refund_id, total));
        o.modified = now_local();
        let o = o.clone();
        // order.updated fires on woocommerce_order_refunded (§2.5).
        self.emit(&mut st, "order.updated", &o);
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        let now = now_local();
        let id = st
            .products
            .values()
            .find(|p| p.sku == sku && p.kind != Kind::Variable)
            .map(|p| p.id)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let parent = {
            let p = st
                .products
                .get_mut(&id)
                .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
            p.manage_stock = true;
            p.stock_quantity = Some(quantity);
            p.modified = now;
            auto_status(p);
            p.parent_id
        };
        if parent != 0 {
            st.sync_parent(parent);
        }
        let p = st
            .products
            .get(&id)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        Ok(st.listing(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rawurlencode_matches_php() {
        assert_eq!(rawurlencode("a b+c/~"), "a%20b%2Bc%2F~");
    }

    #[test]
    fn oauth_rfc5849_example_shape() {
        let params = vec![
            ("oauth_consumer_key".to_string(), "ck".to_string()),
            ("oauth_nonce".into(), "n".into()),
            ("a".into(), "x y".into()),
        ];
        let b = oauth_base_string("get", "http://h/wp-json/wc/v3/products", &params);
        assert_eq!(b, "GET&http%3A%2F%2Fh%2Fwp-json%2Fwc%2Fv3%2Fproducts&a%3Dx%2520y%26oauth_consumer_key%3Dck%26oauth_nonce%3Dn");
    }
}
