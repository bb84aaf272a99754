//! bol.com Retailer API simulator (note §1, checklist §1.9).
//!
//! Emulated: the client-credentials token endpoint (`POST /token`, §1.2) with expiring
//! JWT-shaped tokens; Bearer auth and vnd media-type negotiation (§1.3); Problem error bodies;
//! offers with `amount`/`correctedStock`/`managedByRetailer` (§1.4); the v10 stock PUT that
//! answers 202 + ProcessStatus and applies the stock only when the process reaches SUCCESS
//! (§1.4, §1.6); the process-status endpoints (single, by entity, bulk) with expiry; v10 and
//! v11 `GET /retailer/offers/{id}` and the synchronous v11 PATCH; `GET /retailer/orders`
//! (FBR, 50 a page, filters) and `GET /retailer/orders/{id}` (§1.5); customer cancellation
//! requests and `PUT /retailer/orders/cancellation`; per-endpoint rate-limit buckets with 429
//! + `Retry-After` (§1.8).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::common::{
    ct_eq, hmac_sha256, lock, retry_after_value, serve, sim_router, Counters, Injected, NewListing,
    RunningSim, SimBackend, SimCore, SimError, SimListing,
};

/// The v10 media type (Accept and Content-Type), note §1.3.
pub const MEDIA_V10: &str = "application/vnd.retailer.v10+json";
/// The v11 offers media type, note §1.3.
pub const MEDIA_V11: &str = "application/vnd.retailer.v11+json";
/// Process status also answers the advertiser media type (shared-v10.json).
const MEDIA_ADVERTISER_V10: &str = "application/vnd.advertiser.v10+json";
const PROBLEM_TYPE: &str = "https://api.bol.com/problems";
const PAGE_SIZE: usize = 50;

/// Unit of a rate-limit window, as in bol's ratelimits JSON (§1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeUnit {
    Seconds,
    Minutes,
    Hours,
}

/// One per-endpoint bucket: `max_capacity` requests per `time_to_live` `time_unit` (§1.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// HTTP methods the rule covers (upper case).
    pub methods: Vec<String>,
    /// Path pattern; `*` matches exactly one segment. The most specific match wins.
    pub path: String,
    pub max_capacity: u32,
    pub time_to_live: u32,
    pub time_unit: TimeUnit,
}

impl RateLimit {
    pub fn new(methods: &str, path: &str, max_capacity: u32, time_unit: TimeUnit) -> RateLimit {
        RateLimit {
            methods: methods.split(',').map(|m| m.trim().to_string()).collect(),
            path: path.to_string(),
            max_capacity,
            time_to_live: 1,
            time_unit,
        }
    }

    fn window_secs(&self) -> f64 {
        let unit = match self.time_unit {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Minutes => 60.0,
            TimeUnit::Hours => 3600.0,
        };
        f64::from(self.time_to_live.max(1)) * unit
    }

    /// Number of literal segments when the rule matches, `None` otherwise.
    fn specificity(&self, method: &str, segs: &[&str]) -> Option<usize> {
        if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return None;
        }
        let pat: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        if pat.len() != segs.len() {
            return None;
        }
        let mut literal = 0;
        for (p, s) in pat.iter().zip(segs) {
            if *p == "*" {
                continue;
            }
            if p != s {
                return None;
            }
            literal += 1;
        }
        Some(literal)
    }
}

/// The published limits of note §1.8. Values for orders and process status come from the
/// older v3/v4-era copy (UNCONFIRMED for v10); the v11 PATCH and the cancellation PUT have
/// no published value and get the offers write limit (UNCONFIRMED).
pub fn default_rate_limits() -> Vec<RateLimit> {
    use TimeUnit::*;
    vec![
        RateLimit::new("PUT", "/retailer/offers/*/stock", 50, Seconds),
        RateLimit::new("PUT,DELETE", "/retailer/offers/*", 50, Seconds),
        RateLimit::new("PUT", "/retailer/offers/*/price", 50, Seconds),
        RateLimit::new("PATCH", "/retailer/offers/*", 50, Seconds),
        RateLimit::new("GET", "/retailer/offers/*", 28, Seconds),
        RateLimit::new("GET", "/retailer/orders", 25, Minutes),
        RateLimit::new("GET", "/retailer/orders/*", 25, Seconds),
        RateLimit::new("PUT", "/retailer/orders/cancellation", 50, Seconds),
        RateLimit::new("GET", "/shared/process-status/*", 100, Seconds),
        RateLimit::new("GET", "/shared/process-status", 100, Seconds),
        RateLimit::new("POST", "/shared/process-status", 2, Seconds),
    ]
}

/// How an asynchronous process ends (shared-v10.json `ProcessStatus.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessOutcome {
    Success,
    Failure,
    Timeout,
}

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens (note §1.2: 299).
    pub token_ttl_secs: u64,
    /// Time a process stays PENDING before it ends.
    pub process_delay: Duration,
    /// Time after creation when a process status answers 404 (§1.6; real value UNCONFIRMED).
    pub process_expiry: Duration,
    /// Whether the account has the Offers API v11 (§1.1: beta, GA UNCONFIRMED).
    pub v11_enabled: bool,
    /// Per-endpoint buckets (§1.8).
    pub rate_limits: Vec<RateLimit>,
    /// Process outcome per offer reference (= stockd SKU); absent means SUCCESS. The
    /// `reject_skus` fault also gives FAILURE.
    pub process_outcomes: HashMap<String, ProcessOutcome>,
    /// A customer cancellation only sets `cancellationRequest`; the item stays open until the
    /// retailer confirms it with `PUT /retailer/orders/cancellation`. When false the item is
    /// cancelled at once (the flag still tells it was the customer's request).
    pub cancel_requires_confirmation: bool,
    /// Answer an empty order page with `{}` instead of `{"orders":[]}` (§1.5: UNCONFIRMED,
    /// clients must accept both).
    pub empty_orders_as_empty_object: bool,
    /// Unit price of new offers and order items.
    pub unit_price: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_id: "bol-sim-client".into(),
            client_secret: "bol-sim-secret".into(),
            token_ttl_secs: 299,
            process_delay: Duration::from_millis(100),
            process_expiry: Duration::from_secs(600),
            v11_enabled: true,
            rate_limits: default_rate_limits(),
            process_outcomes: HashMap::new(),
            cancel_requires_confirmation: false,
            empty_orders_as_empty_object: true,
            unit_price: 9.99,
        }
    }
}

/// Counters specific to bol, as served by `GET /_sim/bol/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BolStats {
    pub tokens_issued: u64,
    /// Token requests made while the client still held an unexpired token (§1.2: bol asks
    /// to reuse tokens until they expire).
    pub token_requests_while_valid: u64,
}

// Handles of running simulators by base URL, so the in-process helpers below can reach the
// bol state behind a [`RunningSim`] without changing the shared framework.
static REGISTRY: Mutex<Vec<(String, Weak<Bol>)>> = Mutex::new(Vec::new());

fn lookup(sim: &RunningSim) -> Option<Arc<Bol>> {
    let mut reg = lock(&REGISTRY);
    reg.retain(|(_, w)| w.strong_count() > 0);
    reg.iter()
        .find(|(u, _)| *u == sim.base_url)
        .and_then(|(_, w)| w.upgrade())
}

/// Token counters of a running bol simulator (`None` if `sim` is not one).
pub fn bol_stats(sim: &RunningSim) -> Option<BolStats> {
    lookup(sim).map(|b| b.bol_stats())
}

/// Make later processes for the offer with this reference end with `outcome`.
pub fn set_process_outcome(sim: &RunningSim, sku: &str, outcome: ProcessOutcome) -> bool {
    match lookup(sim) {
        Some(b) => {
            lock(&b.state).outcomes.insert(sku.to_string(), outcome);
            true
        }
        None => false,
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let jwt_key = {
        let mut k = core.rand_u64().to_be_bytes().to_vec();
        k.extend_from_slice(&core.rand_u64().to_be_bytes());
        k
    };
    let ean_base = core.rand_u64() % 1_000_000;
    let sim = Arc::new(Bol {
        state: Mutex::new(BolState {
            outcomes: config.process_outcomes.clone(),
            ean_next: ean_base * 10_000,
            process_next: 1_000_000 + core.rand_u64() % 1_000_000,
            item_next: 2_000_000_000 + core.rand_u64() % 100_000_000,
            ..BolState::default()
        }),
        config,
        core,
        base: base.clone(),
        jwt_key,
    });
    lock(&REGISTRY).push((base, Arc::downgrade(&sim)));
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = Router::new()
        .route("/_sim/bol/stats", get(op_stats))
        .route("/_sim/bol/process-outcome", post(op_outcome))
        .route("/token", any(api_handler))
        .route("/retailer/{*rest}", any(api_handler))
        .route("/shared/{*rest}", any(api_handler))
        .with_state(sim)
        .merge(sim_router(backend.clone()))
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "Not Found",
                "The requested resource could not be found.",
                "",
                vec![],
            )
        });
    serve(router, listener, backend)
}

// ---------------------------------------------------------------------------------------------
// State

struct Offer {
    offer_id: String,
    ean: String,
    reference: String,
    amount: i64,
    managed_by_retailer: bool,
    /// `seq` of the last applied stock update (orders after it count when managed).
    updated_seq: u64,
    on_hold: bool,
    modified: DateTime<Utc>,
    unit_price: f64,
}

struct Item {
    id: String,
    offer_id: String,
    quantity: i64,
    shipped: i64,
    cancelled: i64,
    cancellation_request: bool,
    changed: DateTime<Utc>,
    unit_price: f64,
}

impl Item {
    fn open(&self) -> i64 {
        (self.quantity - self.shipped - self.cancelled).max(0)
    }
}

struct Order {
    id: String,
    placed: DateTime<Utc>,
    seq: u64,
    items: Vec<Item>,
}

enum Action {
    Stock {
        offer_id: String,
        amount: i64,
        managed: bool,
    },
    Cancel {
        item_id: String,
    },
    /// Nothing to apply (unknown entity); the process fails.
    None,
}

struct NewProcess {
    entity_id: String,
    event_type: &'static str,
    description: String,
    outcome: ProcessOutcome,
    failure: String,
    action: Action,
}

struct Process {
    id: u64,
    entity_id: String,
    event_type: &'static str,
    description: String,
    created: DateTime<Utc>,
    created_at: Instant,
    due: Instant,
    status: ProcessOutcomeOrPending,
    outcome: ProcessOutcome,
    failure: String,
    error: Option<String>,
    action: Action,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProcessOutcomeOrPending {
    Pending,
    Done(ProcessOutcome),
}

struct Bucket {
    level: f64,
    at: Instant,
}

#[derive(Default)]
struct BolState {
    offers: Vec<Offer>,
    orders: Vec<Order>,
    processes: BTreeMap<u64, Process>,
    process_next: u64,
    item_next: u64,
    ean_next: u64,
    seq: u64,
    /// token → expiry
    tokens: HashMap<String, Instant>,
    /// client id → expiry of its newest token
    client_token: HashMap<String, Instant>,
    buckets: HashMap<usize, Bucket>,
    outcomes: HashMap<String, ProcessOutcome>,
    stats: BolStats,
}

impl BolState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn offer(&self, id: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.offer_id == id)
    }

    fn offer_by_sku(&self, sku: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.reference == sku)
    }

    /// `correctedStock` (§1.4): amount minus open order items; with `managedByRetailer`
    /// only items of orders placed after the last stock update count.
    fn corrected(&self, o: &Offer) -> i64 {
        let open: i64 = self
            .orders
            .iter()
            .filter(|ord| !o.managed_by_retailer || ord.seq > o.updated_seq)
            .flat_map(|ord| ord.items.iter())
            .filter(|i| i.offer_id == o.offer_id)
            .map(Item::open)
            .sum();
        (o.amount - open).max(0)
    }

    fn listing(&self, o: &Offer) -> SimListing {
        let q = self.corrected(o);
        let mut external = Map::new();
        external.insert("offer_id".into(), Value::String(o.offer_id.clone()));
        external.insert("ean".into(), Value::String(o.ean.clone()));
        SimListing {
            sku: o.reference.clone(),
            external,
            quantity: if o.on_hold { 0 } else { q },
            // The offer is not for sale at 0 (§1.4); bol has no backorders.
            availability: if q > 0 && !o.on_hold {
                "in_stock"
            } else {
                "out_of_stock"
            }
            .into(),
        }
    }

    fn new_ean(&mut self) -> String {
        self.ean_next += 1;
        ean13(&format!("87{:010}", self.ean_next % 10_000_000_000))
    }
}

/// Append the GS1 check digit to 12 digits.
fn ean13(body12: &str) -> String {
    let sum: u32 = body12
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body12}{}", (10 - sum % 10) % 10)
}

struct Bol {
    config: Config,
    core: Arc<SimCore>,
    state: Mutex<BolState>,
    base: String,
    jwt_key: Vec<u8>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Bol {
    fn bol_stats(&self) -> BolStats {
        lock(&self.state).stats.clone()
    }

    /// Resolve every process whose delay has passed, oldest first, so stock updates and orders
    /// interleave in time order.
    fn settle(&self, st: &mut BolState) {
        let now = Instant::now();
        let due: Vec<u64> = st
            .processes
            .values()
            .filter(|p| p.status == ProcessOutcomeOrPending::Pending && p.due <= now)
            .map(|p| p.id)
            .collect();
        for id in due {
            let Some(p) = st.processes.get_mut(&id) else {
                continue;
            };
            let outcome = p.outcome;
            let failure = p.failure.clone();
            let action = std::mem::replace(&mut p.action, Action::None);
            let result = match outcome {
                ProcessOutcome::Success => self.apply(st, action),
                ProcessOutcome::Failure => Err(failure),
                ProcessOutcome::Timeout => Ok(()),
            };
            if let Some(p) = st.processes.get_mut(&id) {
                match result {
                    Ok(()) => p.status = ProcessOutcomeOrPending::Done(outcome),
                    Err(msg) => {
                        p.status = ProcessOutcomeOrPending::Done(ProcessOutcome::Failure);
                        p.error = Some(msg);
                    }
                }
            }
        }
        let expiry = self.config.process_expiry;
        st.processes
            .retain(|_, p| now.duration_since(p.created_at) < expiry);
    }

    fn apply(&self, st: &mut BolState, action: Action) -> Result<(), String> {
        match action {
            Action::Stock {
                offer_id,
                amount,
                managed,
            } => {
                let seq = st.next_seq();
                let Some(o) = st.offers.iter_mut().find(|o| o.offer_id == offer_id) else {
                    return Err(format!("Offer with id '{offer_id}' does not exist."));
                };
                o.amount = amount;
                o.managed_by_retailer = managed;
                o.updated_seq = seq;
                o.modified = Utc::now();
                Counters::add(&self.core.counters.updates_applied, 1);
                Ok(())
            }
            Action::Cancel { item_id } => {
                for ord in st.orders.iter_mut() {
                    if let Some(i) = ord.items.iter_mut().find(|i| i.id == item_id) {
                        let open = i.open();
                        if open == 0 {
                            return Err(format!(
                                "Order item '{item_id}' has already been handled."
                            ));
                        }
                        i.cancelled += open;
                        i.changed = Utc::now();
                        return Ok(());
                    }
                }
                Err(format!("Order item '{item_id}' does not exist."))
            }
            Action::None => Err("Unknown entity.".into()),
        }
    }

    fn create_process(&self, st: &mut BolState, np: NewProcess) -> Value {
        let NewProcess {
            entity_id,
            event_type,
            description,
            outcome,
            failure,
            action,
        } = np;
        st.process_next += 1;
        let id = st.process_next;
        let now = Instant::now();
        let p = Process {
            id,
            entity_id,
            event_type,
            description,
            created: Utc::now(),
            created_at: now,
            due: now + self.config.process_delay,
            status: ProcessOutcomeOrPending::Pending,
            outcome,
            failure,
            error: None,
            action,
        };
        let v = self.process_json(&p);
        st.processes.insert(id, p);
        v
    }

    fn process_json(&self, p: &Process) -> Value {
        let status = match p.status {
            ProcessOutcomeOrPending::Pending => "PENDING",
            ProcessOutcomeOrPending::Done(ProcessOutcome::Success) => "SUCCESS",
            ProcessOutcomeOrPending::Done(ProcessOutcome::Failure) => "FAILURE",
            ProcessOutcomeOrPending::Done(ProcessOutcome::Timeout) => "TIMEOUT",
        };
        json!({
            "processStatusId": p.id.to_string(),
            "entityId": p.entity_id,
            "eventType": p.event_type,
            "description": p.description,
            "status": status,
            "errorMessage": p.error,
            "createTimestamp": ts(p.created),
            // `rel` values are UNCONFIRMED (§1.6); "self" points at the single-status URL.
            "links": [{"rel": "self", "href": format!("{}/shared/process-status/{}", self.base, p.id)}],
        })
    }

    /// The outcome of a new process for the offer with this reference.
    fn outcome_for(&self, st: &BolState, sku: Option<&str>) -> (ProcessOutcome, String) {
        let Some(sku) = sku else {
            return (ProcessOutcome::Success, String::new());
        };
        if self.core.rejects_sku(sku) {
            return (
                ProcessOutcome::Failure,
                // Wording UNCONFIRMED: bol's process failure messages are not in the note.
                format!("The stock of the offer with reference '{sku}' could not be updated because the offer is blocked."),
            );
        }
        match st.outcomes.get(sku) {
            Some(ProcessOutcome::Failure) => (
                ProcessOutcome::Failure,
                format!("The stock of the offer with reference '{sku}' could not be updated."),
            ),
            Some(o) => (*o, String::new()),
            None => (ProcessOutcome::Success, String::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

fn problem(
    status: StatusCode,
    title: &str,
    detail: &str,
    instance: &str,
    violations: Vec<(String, String)>,
) -> Response {
    let v: Vec<Value> = violations
        .into_iter()
        .map(|(name, reason)| json!({"name": name, "reason": reason}))
        .collect();
    let body = json!({
        "type": PROBLEM_TYPE,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "host": "Instance-001",
        "instance": format!("https://api.bol.com/{instance}"),
        "violations": v,
    });
    vnd_json(status, MEDIA_V10, &body)
}

fn bad_request(instance: &str, violations: Vec<(String, String)>) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "Error validating request. Consult the bol.com API documentation for more information.",
        "Bad request",
        instance,
        violations,
    )
}

fn not_found(instance: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not Found",
        "The requested item could not be found.",
        instance,
        vec![],
    )
}

fn vnd_json(status: StatusCode, media: &str, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    if let Ok(h) = HeaderValue::from_str(media) {
        r.headers_mut().insert("content-type", h);
    }
    r
}

fn too_many(secs: f64, instance: &str) -> Response {
    // Body wording UNCONFIRMED; status and integer Retry-After per §1.8.
    let mut r = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests",
        "Too many requests, retry later.",
        instance,
        vec![],
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs.ceil().max(1.0))) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The media types listed in an Accept or Content-Type header, lower case, without parameters.
fn media_types(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

// ---------------------------------------------------------------------------------------------
// Operator endpoints specific to bol

async fn op_stats(AxState(sim): AxState<Arc<Bol>>) -> Response {
    axum::Json(sim.bol_stats()).into_response()
}

#[derive(Deserialize)]
struct OutcomeBody {
    sku: String,
    outcome: ProcessOutcome,
}

async fn op_outcome(AxState(sim): AxState<Arc<Bol>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<OutcomeBody>(&body) {
        Ok(b) => {
            lock(&sim.state).outcomes.insert(b.sku.clone(), b.outcome);
            axum::Json(json!({"sku": b.sku, "outcome": b.outcome})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "bad_request", "message": e.to_string()})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// API

struct Ctx {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Ctx {
    fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn instance(&self) -> &str {
        self.path.trim_start_matches('/')
    }
}

async fn api_handler(AxState(sim): AxState<Arc<Bol>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_form(req.uri().query().unwrap_or(""));
    let headers = req.headers().clone();
    let instance = path.trim_start_matches('/').to_string();
    if let Some(inj) = sim.core.intercept().await {
        return match inj {
            Injected::Outage => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "The service is temporarily unavailable.",
                &instance,
                vec![],
            ),
            Injected::ServerError => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                "An unexpected error occurred.",
                &instance,
                vec![],
            ),
            Injected::Throttle { retry_after } => too_many(retry_after.unwrap_or(1.0), &instance),
        };
    }
    let body = match axum::body::to_bytes(req.into_body(), 4 << 20).await {
        Ok(b) => b.to_vec(),
        Err(_) => return bad_request(&instance, vec![("body".into(), "Body too large.".into())]),
    };
    let ctx = Ctx {
        method,
        path,
        query,
        headers,
        body,
    };
    if ctx.path == "/token" {
        return sim.token(&ctx);
    }
    if let Err(r) = sim.authenticate(&ctx) {
        return *r;
    }
    let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
    let rl_headers = match sim.rate_limit(ctx.method.as_str(), &segs) {
        Ok(h) => h,
        Err(wait) => {
            Counters::add(&sim.core.counters.rate_limit_violations, 1);
            return too_many(wait, ctx.instance());
        }
    };
    let mut resp = sim.route(&ctx, &segs);
    for (k, v) in rl_headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

impl Bol {
    fn token(&self, ctx: &Ctx) -> Response {
        let oauth_err = |status: StatusCode, error: &str, desc: &str| {
            // OAuth2 error shape; bol's exact body is UNCONFIRMED (picqer reads
            // `error_description`, §1.3).
            (
                status,
                axum::Json(json!({"error": error, "error_description": desc})),
            )
                .into_response()
        };
        if ctx.method != Method::POST {
            return oauth_err(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "Only POST is supported.",
            );
        }
        let creds = header(&ctx.headers, "authorization")
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| rest.trim().to_string())
            })
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let Some((id, secret)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
            return oauth_err(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Full authentication is required: use HTTP Basic client credentials.",
            );
        };
        if !ct_eq(id.as_bytes(), self.config.client_id.as_bytes())
            || !ct_eq(secret.as_bytes(), self.config.client_secret.as_bytes())
        {
            return oauth_err(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Bad client credentials",
            );
        }
        // Liberal: grant_type in the form body or in the query string.
        let body = String::from_utf8_lossy(&ctx.body).to_string();
        let mut params = parse_form(&body);
        params.extend(ctx.query.iter().cloned());
        let grant = params
            .iter()
            .find(|(k, _)| k == "grant_type")
            .map(|(_, v)| v.as_str());
        if grant != Some("client_credentials") {
            return oauth_err(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.",
            );
        }
        let now = Utc::now().timestamp();
        let ttl = self.config.token_ttl_secs;
        let jti = self.core.uuid();
        let head = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "sub": id, "client_id": id, "iat": now, "exp": now + ttl as i64,
            "jti": jti, "scope": ["RETAILER"], "iss": "https://login.bol.com",
        });
        let payload = b64url(claims.to_string().as_bytes());
        let signing = format!("{head}.{payload}");
        let sig = b64url(&hmac_sha256(&self.jwt_key, signing.as_bytes()));
        let token = format!("{signing}.{sig}");
        let expires = Instant::now() + Duration::from_secs(ttl);
        {
            let mut st = lock(&self.state);
            let now_i = Instant::now();
            if st.client_token.get(id).is_some_and(|e| *e > now_i) {
                st.stats.token_requests_while_valid += 1;
            }
            st.stats.tokens_issued += 1;
            st.client_token.insert(id.to_string(), expires);
            st.tokens.retain(|_, e| *e > now_i);
            st.tokens.insert(token.clone(), expires);
        }
        (
            StatusCode::OK,
            axum::Json(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "scope": "RETAILER",
            })),
        )
            .into_response()
    }

    fn authenticate(&self, ctx: &Ctx) -> Result<(), Box<Response>> {
        let token = header(&ctx.headers, "authorization").and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        });
        let ok = token.is_some_and(|t| {
            lock(&self.state)
                .tokens
                .get(&t)
                .is_some_and(|e| *e > Instant::now())
        });
        if ok {
            return Ok(());
        }
        // §1.3/§1.9: 401 with a Problem for a missing, invalid or expired token.
        let mut r = problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Full authentication is required to access this resource: the access token is missing, invalid or expired.",
            ctx.instance(),
            vec![],
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        Err(Box::new(r))
    }

    /// Take one request from the most specific bucket; `Err(seconds to wait)` when empty.
    fn rate_limit(&self, method: &str, segs: &[&str]) -> Result<Vec<(&'static str, String)>, f64> {
        let best = self
            .config
            .rate_limits
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.specificity(method, segs).map(|s| (s, i)))
            .max_by_key(|(s, i)| (*s, std::cmp::Reverse(*i)));
        let Some((_, idx)) = best else {
            return Ok(vec![]);
        };
        let rule = &self.config.rate_limits[idx];
        let cap = f64::from(rule.max_capacity.max(1));
        let rate = cap / rule.window_secs();
        let mut st = lock(&self.state);
        let now = Instant::now();
        let b = st.buckets.entry(idx).or_insert(Bucket {
            level: cap,
            at: now,
        });
        b.level = (b.level + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
        b.at = now;
        if b.level >= 1.0 {
            b.level -= 1.0;
            // Header names UNCONFIRMED for the Retailer API (§1.8); values: the bucket size,
            // whole requests left, seconds until the bucket is full again.
            Ok(vec![
                ("x-ratelimit-limit", format!("{}", rule.max_capacity)),
                (
                    "x-ratelimit-remaining",
                    format!("{}", b.level.floor() as u64),
                ),
                (
                    "x-ratelimit-reset",
                    format!("{}", ((cap - b.level) / rate).ceil() as u64),
                ),
            ])
        } else {
            Err(((1.0 - b.level) / rate).max(0.001))
        }
    }

    /// Check Accept (and Content-Type on bodies) against the media types the endpoint serves.
    /// Returns the negotiated type. Status for a wrong type is UNCONFIRMED (§1.9 item 2):
    /// 406 for Accept, 415 for Content-Type.
    fn negotiate(
        &self,
        ctx: &Ctx,
        allowed: &[&'static str],
    ) -> Result<&'static str, Box<Response>> {
        let accepts = media_types(header(&ctx.headers, "accept"));
        let Some(chosen) = accepts
            .iter()
            .find_map(|a| allowed.iter().find(|m| **m == a.as_str()).copied())
        else {
            return Err(Box::new(problem(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "The requested media type in the Accept header is not supported by this endpoint.",
                ctx.instance(),
                vec![(
                    "Accept".into(),
                    format!(
                        "Request contains invalid value(s): '{}', allowed values: {}.",
                        header(&ctx.headers, "accept").unwrap_or(""),
                        allowed.join(", ")
                    ),
                )],
            )));
        };
        if matches!(ctx.method, Method::PUT | Method::POST | Method::PATCH) {
            let ct = media_types(header(&ctx.headers, "content-type"));
            if ct.first().map(String::as_str) != Some(chosen) {
                return Err(Box::new(problem(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported Media Type",
                    "The media type in the Content-Type header is not supported by this endpoint.",
                    ctx.instance(),
                    vec![(
                        "Content-Type".into(),
                        format!(
                            "Request contains invalid value(s): '{}', allowed values: {chosen}.",
                            header(&ctx.headers, "content-type").unwrap_or("")
                        ),
                    )],
                )));
            }
        }
        Ok(chosen)
    }

    fn route(&self, ctx: &Ctx, segs: &[&str]) -> Response {
        let m = &ctx.method;
        let offers_get: &[&'static str] = if self.config.v11_enabled {
            &[MEDIA_V10, MEDIA_V11]
        } else {
            &[MEDIA_V10]
        };
        let v11_only: &[&'static str] = if self.config.v11_enabled {
            &[MEDIA_V11]
        } else {
            &[]
        };
        let shared: &[&'static str] = &[MEDIA_V10, MEDIA_ADVERTISER_V10];
        let v10: &[&'static str] = &[MEDIA_V10];
        let allowed = match segs {
            ["retailer", "offers", _] if *m == Method::GET => offers_get,
            ["retailer", "offers", _] if *m == Method::PATCH => v11_only,
            ["retailer", "offers", _, "stock"] if *m == Method::PUT => v10,
            ["retailer", "orders"] if *m == Method::GET => v10,
            ["retailer", "orders", "cancellation"] if *m == Method::PUT => v10,
            ["retailer", "orders", _] if *m == Method::GET => v10,
            ["shared", "process-status", _] if *m == Method::GET => shared,
            ["shared", "process-status"] if *m == Method::GET || *m == Method::POST => shared,
            _ => return not_found(ctx.instance()),
        };
        let media = match self.negotiate(ctx, allowed) {
            Ok(m) => m,
            Err(r) => return *r,
        };
        let mut resp = match segs {
            ["retailer", "offers", id] if *m == Method::GET => self.get_offer(ctx, id, media),
            ["retailer", "offers", id] => self.patch_offer(ctx, id),
            ["retailer", "offers", id, "stock"] => self.put_stock(ctx, id),
            ["retailer", "orders"] => self.list_orders(ctx),
            ["retailer", "orders", "cancellation"] => self.put_cancellation(ctx),
            ["retailer", "orders", id] => self.get_order(ctx, id),
            ["shared", "process-status", id] => self.get_process(ctx, id),
            ["shared", "process-status"] if *m == Method::GET => self.processes_by_entity(ctx),
            _ => self.processes_bulk(ctx),
        };
        if media != MEDIA_V10 && resp.headers().get("content-type").is_some() {
            if let Ok(h) = HeaderValue::from_str(media) {
                resp.headers_mut().insert("content-type", h);
            }
        }
        resp
    }

    fn parse_body(&self, ctx: &Ctx) -> Result<Map<String, Value>, Box<Response>> {
        match serde_json::from_slice::<Value>(&ctx.body) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(Box::new(bad_request(
                ctx.instance(),
                vec![(
                    "body".into(),
                    "Request body is missing or is not a valid JSON object.".into(),
                )],
            ))),
        }
    }

    fn put_stock(&self, ctx: &Ctx, offer_id: &str) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let mut violations = Vec::new();
        // UpdateOfferStockRequest: both required, amount int32 in 0..=999 (§1.4).
        let amount = match body.get("amount") {
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                let a = n.as_i64().unwrap_or(-1);
                if a < 0 {
                    violations.push((
                        "amount".into(),
                        "Must be greater than or equal to 0.".into(),
                    ));
                } else if a > 999 {
                    violations.push(("amount".into(), "Must be less than or equal to 999.".into()));
                }
                a
            }
            Some(_) => {
                violations.push(("amount".into(), "Must be an integer.".into()));
                0
            }
            None => {
                violations.push(("amount".into(), "Must not be null.".into()));
                0
            }
        };
        let managed = match body.get("managedByRetailer") {
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                violations.push(("managedByRetailer".into(), "Must be a boolean.".into()));
                false
            }
            None => {
                violations.push(("managedByRetailer".into(), "Must not be null.".into()));
                false
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let sku = st.offer(offer_id).map(|o| o.reference.clone());
        let (outcome, failure, action) = match &sku {
            Some(_) => {
                let (o, f) = self.outcome_for(&st, sku.as_deref());
                (
                    o,
                    f,
                    Action::Stock {
                        offer_id: offer_id.to_string(),
                        amount,
                        managed,
                    },
                )
            }
            // The spec lists only 202 and 400 here: an unknown offer fails in the process.
            None => (
                ProcessOutcome::Failure,
                format!("Offer with id '{offer_id}' does not exist."),
                Action::None,
            ),
        };
        // entityId = offer id is UNCONFIRMED (§1.6).
        let v = self.create_process(
            &mut st,
            NewProcess {
                entity_id: offer_id.to_string(),
                event_type: "UPDATE_OFFER_STOCK",
                description: format!("Update stock for offer with id {offer_id}."),
                outcome,
                failure,
                action,
            },
        );
        vnd_json(StatusCode::ACCEPTED, MEDIA_V10, &v)
    }

    fn get_offer(&self, ctx: &Ctx, offer_id: &str, media: &str) -> Response {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let Some(o) = st.offer(offer_id) else {
            return not_found(ctx.instance());
        };
        let corrected = st.corrected(o);
        let stock = json!({
            "amount": o.amount,
            "correctedStock": corrected,
            "managedByRetailer": o.managed_by_retailer,
        });
        let pricing = json!({"bundlePrices": [{"quantity": 1, "unitPrice": o.unit_price}]});
        let for_sale = corrected > 0 && !o.on_hold;
        let v = if media == MEDIA_V11 {
            json!({
                "offerId": o.offer_id,
                "ean": o.ean,
                "lastModifiedDateTime": ts(o.modified),
                "reference": o.reference,
                "onHoldByRetailer": o.on_hold,
                "stock": stock,
                "countryAvailabilities": [{"countryCode": "NL", "forSale": for_sale}],
                "condition": {"category": "NEW"},
                "product": {"bolProductId": format!("92{}", &o.ean[..12])},
                "pricing": pricing,
                "fulfilment": {
                    "method": "FBR",
                    "schedule": "MY_DELIVERY_PROMISE",
                    "deliveryPromise": {"minimumDaysToCustomer": 1, "maximumDaysToCustomer": 2},
                },
            })
        } else {
            let reasons: Vec<Value> = if for_sale {
                vec![]
            } else {
                // Code/wording UNCONFIRMED.
                vec![json!({"code": "4000", "description": "The offer has no stock."})]
            };
            json!({
                "offerId": o.offer_id,
                "ean": o.ean,
                "reference": o.reference,
                "onHoldByRetailer": o.on_hold,
                "unknownProductTitle": format!("Product {}", o.reference),
                "pricing": pricing,
                "stock": stock,
                "fulfilment": {"method": "FBR", "deliveryCode": "1-2d"},
                "store": {"productTitle": format!("Product {}", o.reference), "visible": [{"countryCode": "NL"}]},
                "condition": {"name": "NEW", "category": "NEW", "comment": ""},
                "notPublishableReasons": reasons,
            })
        };
        vnd_json(StatusCode::OK, media, &v)
    }

    /// v11 PATCH: synchronous, 204 (§1.4). Server-side stock bounds are UNCONFIRMED, so any
    /// int32 ≥ 0 is accepted.
    fn patch_offer(&self, ctx: &Ctx, offer_id: &str) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let mut violations: Vec<(String, String)> = Vec::new();
        let mut new_amount = None;
        let mut new_managed = None;
        if let Some(stock) = body.get("stock") {
            match stock {
                Value::Object(s) => {
                    match s.get("amount") {
                        None | Some(Value::Null) => {}
                        Some(Value::Number(n))
                            if n.as_i64()
                                .is_some_and(|a| (0..=i64::from(i32::MAX)).contains(&a)) =>
                        {
                            new_amount = n.as_i64();
                        }
                        Some(_) => violations.push((
                            "stock.amount".into(),
                            "Must be a non-negative integer.".into(),
                        )),
                    }
                    match s.get("managedByRetailer") {
                        None | Some(Value::Null) => {}
                        Some(Value::Bool(b)) => new_managed = Some(*b),
                        Some(_) => violations.push((
                            "stock.managedByRetailer".into(),
                            "Must be a boolean.".into(),
                        )),
                    }
                }
                _ => violations.push(("stock".into(), "Must be an object.".into())),
            }
        }
        let reference = match body.get("reference") {
            None => None,
            Some(Value::String(r)) if r.chars().count() <= 100 => Some(r.clone()),
            Some(_) => {
                violations.push((
                    "reference".into(),
                    "Must be a string of at most 100 characters.".into(),
                ));
                None
            }
        };
        let on_hold = match body.get("onHoldByRetailer") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                violations.push(("onHoldByRetailer".into(), "Must be a boolean.".into()));
                None
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let Some(sku) = st.offer(offer_id).map(|o| o.reference.clone()) else {
            return not_found(ctx.instance());
        };
        let stock_change = new_amount.is_some() || new_managed.is_some();
        if stock_change {
            let (outcome, failure) = self.outcome_for(&st, Some(&sku));
            if outcome == ProcessOutcome::Failure {
                // v11 error bodies are in the missing common/responses.yaml (§1.4): UNCONFIRMED.
                return bad_request(ctx.instance(), vec![("stock".into(), failure)]);
            }
        }
        let seq = st.next_seq();
        let Some(o) = st.offers.iter_mut().find(|o| o.offer_id == offer_id) else {
            return not_found(ctx.instance());
        };
        if let Some(a) = new_amount {
            o.amount = a;
        }
        if let Some(m) = new_managed {
            o.managed_by_retailer = m;
        }
        if stock_change {
            o.updated_seq = seq;
            Counters::add(&self.core.counters.updates_applied, 1);
        }
        if let Some(r) = reference {
            o.reference = r;
        }
        if let Some(h) = on_hold {
            o.on_hold = h;
        }
        o.modified = Utc::now();
        StatusCode::NO_CONTENT.into_response()
    }

    fn list_orders(&self, ctx: &Ctx) -> Response {
        let mut violations = Vec::new();
        let page = match ctx.q("page") {
            None => 1,
            Some(p) => match p.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    violations.push(("page".into(), "Must be greater than or equal to 1.".into()));
                    1
                }
            },
        };
        let method = ctx.q("fulfilment-method").unwrap_or("FBR");
        if !["FBR", "FBB", "ALL"].contains(&method) {
            violations.push((
                "fulfilment-method".into(),
                format!(
                    "Request contains invalid value(s): '{method}', allowed values: FBR, FBB, ALL."
                ),
            ));
        }
        let status = ctx.q("status").unwrap_or("OPEN");
        if !["OPEN", "SHIPPED", "ALL"].contains(&status) {
            violations.push((
                "status".into(),
                format!("Request contains invalid value(s): '{status}', allowed values: OPEN, SHIPPED, ALL."),
            ));
        }
        let interval = match ctx.q("change-interval-minute") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=60).contains(&n) => Some(n),
                _ => {
                    violations.push((
                        "change-interval-minute".into(),
                        "Must be an integer between 1 and 60.".into(),
                    ));
                    None
                }
            },
        };
        // Liberal: a date, or a date-time whose date part is used.
        let change_date = match ctx.q("latest-change-date") {
            None => None,
            Some(v) => {
                match chrono::NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => {
                        violations.push((
                        "latest-change-date".into(),
                        format!("Request contains invalid value(s): '{v}', expected a date (yyyy-MM-dd)."),
                    ));
                        None
                    }
                }
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let now = Utc::now();
        let mut out = Vec::new();
        // Every simulated order is FBR.
        if method != "FBB" {
            for ord in &st.orders {
                let items: Vec<Value> = ord
                    .items
                    .iter()
                    .filter(|i| match status {
                        "OPEN" => i.open() > 0,
                        "SHIPPED" => i.shipped > 0,
                        _ => true,
                    })
                    .filter(|i| {
                        interval.is_none_or(|m| now - i.changed <= chrono::Duration::minutes(m))
                    })
                    .filter(|i| change_date.is_none_or(|d| i.changed.date_naive() == d))
                    .filter_map(|i| {
                        let ean = st.offer(&i.offer_id).map(|o| o.ean.clone())?;
                        Some(json!({
                            "orderItemId": i.id,
                            "ean": ean,
                            "fulfilmentMethod": "FBR",
                            "fulfilmentStatus": if i.open() > 0 { "OPEN" } else { "HANDLED" },
                            "quantity": i.quantity,
                            "quantityShipped": i.shipped,
                            "quantityCancelled": i.cancelled,
                            "cancellationRequest": i.cancellation_request,
                            "latestChangedDateTime": ts(i.changed),
                        }))
                    })
                    .collect();
                if !items.is_empty() {
                    out.push(json!({
                        "orderId": ord.id,
                        "orderPlacedDateTime": ts(ord.placed),
                        "orderItems": items,
                    }));
                }
            }
        }
        let page_items: Vec<Value> = out
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        let body = if page_items.is_empty() && self.config.empty_orders_as_empty_object {
            json!({})
        } else {
            json!({"orders": page_items})
        };
        vnd_json(StatusCode::OK, MEDIA_V10, &body)
    }

    fn get_order(&self, ctx: &Ctx, order_id: &str) -> Response {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let Some(ord) = st.orders.iter().find(|o| o.id == order_id) else {
            return not_found(ctx.instance());
        };
        let latest = (ord.placed + chrono::Duration::days(2))
            .format("%Y-%m-%d")
            .to_string();
        let expiry = (ord.placed + chrono::Duration::days(5))
            .format("%Y-%m-%d")
            .to_string();
        let items: Vec<Value> = ord
            .items
            .iter()
            .map(|i| {
                let (ean, reference) = st
                    .offer(&i.offer_id)
                    .map(|o| (o.ean.clone(), o.reference.clone()))
                    .unwrap_or_default();
                let total = round2(i.unit_price * i.quantity as f64);
                json!({
                    "orderItemId": i.id,
                    "cancellationRequest": i.cancellation_request,
                    "fulfilment": {
                        "method": "FBR",
                        "distributionParty": "RETAILER",
                        "latestDeliveryDate": latest,
                        "expiryDate": expiry,
                        "timeFrameType": "REGULAR",
                    },
                    "offer": {"offerId": i.offer_id, "reference": reference},
                    "product": {"ean": ean, "title": format!("Product {reference}")},
                    "quantity": i.quantity,
                    "quantityShipped": i.shipped,
                    "quantityCancelled": i.cancelled,
                    "unitPrice": i.unit_price,
                    "totalPrice": total,
                    "discounts": [],
                    "commission": round2(total * 0.15),
                    "additionalServices": [],
                    "latestChangedDateTime": ts(i.changed),
                })
            })
            .collect();
        let address = json!({
            "salutation": "UNKNOWN",
            "firstName": "Billie",
            "surname": "Jansen",
            "streetName": "Dorpstraat",
            "houseNumber": "1",
            "zipCode": "1111ZZ",
            "city": "Utrecht",
            "countryCode": "NL",
            "email": "billie@verkopen.bol.com",
            "language": "nl",
        });
        let mut billing = address.clone();
        if let Some(b) = billing.as_object_mut() {
            b.remove("language");
        }
        let v = json!({
            "orderId": ord.id,
            "pickupPoint": false,
            "orderPlacedDateTime": ts(ord.placed),
            "shipmentDetails": address,
            "billingDetails": billing,
            "orderItems": items,
        });
        vnd_json(StatusCode::OK, MEDIA_V10, &v)
    }

    /// `PUT /retailer/orders/cancellation` (§1.5): exactly one item, a known reason code.
    fn put_cancellation(&self, ctx: &Ctx) -> Response {
        const REASONS: &[&str] = &[
            "OUT_OF_STOCK",
            "REQUESTED_BY_CUSTOMER",
            "BAD_CONDITION",
            "HIGHER_SHIPCOST",
            "INCORRECT_PRICE",
            "NOT_AVAIL_IN_TIME",
            "NO_BOL_GUARANTEE",
            "ORDERED_TWICE",
            "RETAIN_ITEM",
            "TECH_ISSUE",
            "UNFINDABLE_ITEM",
            "OTHER",
        ];
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let items = body.get("orderItems").and_then(Value::as_array);
        let Some([item]) = items.map(Vec::as_slice) else {
            return bad_request(
                ctx.instance(),
                vec![("orderItems".into(), "Size must be between 1 and 1.".into())],
            );
        };
        let mut violations = Vec::new();
        let item_id = match item.get("orderItemId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                violations.push((
                    "orderItems[0].orderItemId".into(),
                    "Must not be empty.".into(),
                ));
                String::new()
            }
        };
        match item.get("reasonCode").and_then(Value::as_str) {
            Some(r) if REASONS.contains(&r) => {}
            other => violations.push((
                "orderItems[0].reasonCode".into(),
                format!(
                    "Request contains invalid value(s): '{}', allowed values: {}.",
                    other.unwrap_or(""),
                    REASONS.join(", ")
                ),
            )),
        }
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let v = self.create_process(
            &mut st,
            NewProcess {
                entity_id: item_id.clone(),
                event_type: "CANCEL_ORDER",
                description: format!("Cancel order item {item_id}."),
                outcome: ProcessOutcome::Success,
                failure: String::new(),
                action: Action::Cancel {
                    item_id: item_id.clone(),
                },
            },
        );
        vnd_json(StatusCode::ACCEPTED, MEDIA_V10, &v)
    }

    fn get_process(&self, ctx: &Ctx, id: &str) -> Response {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        match id.parse::<u64>().ok().and_then(|n| st.processes.get(&n)) {
            Some(p) => vnd_json(StatusCode::OK, MEDIA_V10, &self.process_json(p)),
            None => not_found(ctx.instance()),
        }
    }

    fn processes_by_entity(&self, ctx: &Ctx) -> Response {
        let mut violations = Vec::new();
        let entity = ctx.q("entity-id").unwrap_or("");
        if entity.is_empty() {
            violations.push(("entity-id".into(), "Required parameter is missing.".into()));
        }
        let event = ctx.q("event-type").unwrap_or("");
        if event.is_empty() {
            violations.push(("event-type".into(), "Required parameter is missing.".into()));
        }
        let page = match ctx.q("page").map(str::parse::<usize>) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => {
                violations.push(("page".into(), "Must be greater than or equal to 1.".into()));
                1
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let list: Vec<Value> = st
            .processes
            .values()
            .rev()
            .filter(|p| p.entity_id == entity && p.event_type == event)
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|p| self.process_json(p))
            .collect();
        vnd_json(StatusCode::OK, MEDIA_V10, &json!({"processStatuses": list}))
    }

    fn processes_bulk(&self, ctx: &Ctx) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let ids: Option<Vec<String>> = body
            .get("processStatusQueries")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|q| match q.get("processStatusId") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            });
        let ids = match ids {
            Some(ids) if (1..=1000).contains(&ids.len()) => ids,
            _ => {
                return bad_request(
                    ctx.instance(),
                    vec![(
                        "processStatusQueries".into(),
                        "Size must be between 1 and 1000.".into(),
                    )],
                )
            }
        };
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let list: Vec<Value> = ids
            .iter()
            .filter_map(|id| id.parse::<u64>().ok().and_then(|n| st.processes.get(&n)))
            .map(|p| self.process_json(p))
            .collect();
        vnd_json(StatusCode::OK, MEDIA_V10, &json!({"processStatuses": list}))
    }
}

// ---------------------------------------------------------------------------------------------
// Customers

impl SimBackend for Bol {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        st.offers.iter().map(|o| st.listing(o)).collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let mut out = Vec::new();
        for n in items {
            let seq = st.next_seq();
            let offer = Offer {
                offer_id: self.core.uuid(),
                ean: st.new_ean(),
                reference: n.sku.clone(),
                // v10 caps stock at 999 (§1.4).
                amount: n.quantity.clamp(0, 999),
                managed_by_retailer: false,
                updated_seq: seq,
                on_hold: false,
                modified: Utc::now(),
                unit_price: self.config.unit_price,
            };
            out.push(st.listing(&offer));
            st.offers.push(offer);
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let mut wanted: Vec<(String, i64)> = Vec::new();
        for (sku, qty) in lines {
            if *qty <= 0 {
                return Err(SimError::BadRequest("quantity must be positive".into()));
            }
            match wanted.iter_mut().find(|(s, _)| s == sku) {
                Some(w) => w.1 += qty,
                None => wanted.push((sku.clone(), *qty)),
            }
        }
        if wanted.is_empty() {
            return Err(SimError::BadRequest("no lines".into()));
        }
        for (sku, qty) in &wanted {
            let o = st
                .offer_by_sku(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            // A customer can only buy what the shop shows.
            if o.on_hold || st.corrected(o) < *qty {
                return Err(SimError::NotAvailable);
            }
        }
        let now = Utc::now();
        let seq = st.next_seq();
        let mut items = Vec::new();
        for (sku, qty) in lines {
            let Some((offer_id, unit_price)) = st
                .offer_by_sku(sku)
                .map(|o| (o.offer_id.clone(), o.unit_price))
            else {
                return Err(SimError::UnknownSku(sku.clone()));
            };
            st.item_next += 1;
            items.push(Item {
                id: st.item_next.to_string(),
                offer_id,
                quantity: *qty,
                shipped: 0,
                cancelled: 0,
                cancellation_request: false,
                changed: now,
                unit_price,
            });
        }
        // Order ids look like "A2K8290LP8" (§1.5).
        const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut r = self.core.rand_u64();
        let mut id = String::from("A");
        for _ in 0..9 {
            id.push(ALNUM[(r % 36) as usize] as char);
            r /= 36;
        }
        id.push_str(&format!("{}", seq % 10));
        let item_ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        st.orders.push(Order {
            id: id.clone(),
            placed: now,
            seq,
            items,
        });
        Ok(json!({"order_id": id, "order_item_ids": item_ids}))
    }

    /// The customer cancels: `cancellationRequest` becomes true; the open quantity is cancelled
    /// at once unless `cancel_requires_confirmation`.
    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let confirm = self.config.cancel_requires_confirmation;
        let ord = st
            .orders
            .iter_mut()
            .find(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        if ord.items.iter().all(|i| i.open() == 0) {
            return Err(SimError::InvalidState("order has no open items".into()));
        }
        let now = Utc::now();
        for i in ord.items.iter_mut().filter(|i| i.open() > 0) {
            i.cancellation_request = true;
            if !confirm {
                i.cancelled += i.open();
            }
            i.changed = now;
        }
        Ok(())
    }

    /// bol handles money back through returns, which are not simulated: a refund cancels what
    /// is still open; without restock the goods are lost, so the offer's amount drops.
    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let ord = st
            .orders
            .iter_mut()
            .find(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        if ord.items.iter().all(|i| i.open() == 0) {
            return Err(SimError::InvalidState("order has no open items".into()));
        }
        let now = Utc::now();
        let mut lost: Vec<(String, i64)> = Vec::new();
        for i in ord.items.iter_mut().filter(|i| i.open() > 0) {
            lost.push((i.offer_id.clone(), i.open()));
            i.cancelled += i.open();
            i.changed = now;
        }
        if !restock {
            for (offer_id, q) in lost {
                if let Some(o) = st.offers.iter_mut().find(|o| o.offer_id == offer_id) {
                    o.amount = (o.amount - q).max(0);
                }
            }
        }
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let seq = st.next_seq();
        let index = st
            .offers
            .iter()
            .position(|o| o.reference == sku)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let offer = &mut st.offers[index];
        // The seller dashboard has the API's 0..=999 range.
        offer.amount = quantity.clamp(0, 999);
        offer.updated_seq = seq;
        offer.modified = Utc::now();
        Ok(st.listing(&st.offers[index]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ean_check_digit() {
        // Known EANs.
        assert_eq!(ean13("400638133393"), "4006381333931");
        assert_eq!(ean13("871234567890"), "8712345678906");
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = default_rate_limits();
        let segs = ["retailer", "offers", "x", "stock"];
        let best = rules
            .iter()
            .filter_map(|r| r.specificity("PUT", &segs).map(|s| (s, r.path.clone())))
            .max_by_key(|(s, _)| *s);
        assert_eq!(
            best.map(|b| b.1).as_deref(),
            Some("/retailer/offers/*/stock")
        );
        let segs = ["retailer", "orders", "cancellation"];
        assert!(rules.iter().any(|r| r.specificity("PUT", &segs) == Some(3)));
        assert_eq!(
            rules[0].specificity("GET", &["retailer", "offers", "x", "stock"]),
            None
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form("grant_type=client_credentials&a=b%20c+d"),
            vec![
                ("grant_type".to_string(), "client_credentials".to_string()),
                ("a".to_string(), "b c d".to_string())
            ]
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
