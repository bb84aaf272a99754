//! Shopify Admin GraphQL API simulator (note §1 and checklist §3 "Shopify").
//!
//! Emulated: `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`; a strict
//! GraphQL front end for the fields below (unknown fields, arguments, directives, bad variables
//! are GraphQL errors in graphql-ruby's shape); `inventorySetQuantities` with the per-version
//! compare-and-swap rules (§1.3), `@idempotent(key:)` (2026-01+, required from 2026-04), the
//! ±1e9 bounds and 250-item input limit (§1.1); `inventoryAdjustQuantities` with the
//! `ledgerDocumentUri` rules (§1.4, error codes UNCONFIRMED); reads through `inventoryItems`,
//! `inventoryItem`, `inventoryLevel`, `location(s)`, `productVariant(s)`, `node` and `nodes`;
//! named quantities per (item, location) with
//! `on_hand = available + committed + reserved + damaged + quality_control + safety_stock`;
//! the calculated-cost leaky bucket with `extensions.cost` on every response (§1.6); orders,
//! cancels and refunds from simulated customers with REST-shaped webhooks signed as in §1.7,
//! retried on failure.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::common::{
    hmac_sha256_base64, lock, retry_after_value, serve, sim_router, Counters, Delivery, Injected,
    NewListing, RetryPolicy, RunningSim, SimBackend, SimCore, SimError, SimListing,
};
use crate::graphql::{self, Document, Field, GValue, OpKind, Selection};

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `"any"` accepts every `YYYY-MM` release version (months 01/04/07/10) and `unstable`;
    /// otherwise a comma-separated list of accepted versions. Others get 404.
    pub api_version: String,
    pub access_token: String,
    /// The app's client secret, the HMAC key of webhooks.
    pub webhook_secret: String,
    pub webhook_url: Option<String>,
    /// Subscribed topics (`orders/create`, `orders/cancelled`, `refunds/create`,
    /// `inventory_levels/update`).
    pub webhook_topics: Vec<String>,
    /// Version used to serialise webhook payloads (`X-Shopify-API-Version`).
    pub webhook_api_version: String,
    /// Delay before each retry; Shopify retries 8 times over about 4 hours (§1.7).
    pub webhook_retry_delays: Vec<Duration>,
    pub webhook_timeout: Duration,
    /// Delete the subscription once a delivery has failed all its retries (§1.7: Admin-API
    /// subscriptions are deleted after 8 consecutive failures).
    pub delete_subscription_after_retries: bool,
    /// Leaky bucket size (`maximumAvailable`), points.
    pub bucket_size: f64,
    /// Points restored per second.
    pub restore_rate: f64,
    /// HTTP status of a THROTTLED response: 200 or 429 (UNCONFIRMED which one Shopify uses).
    pub throttle_status: u16,
    /// Single-query maximum cost (UNCONFIRMED, 3rd-party: 1000).
    pub max_query_cost: f64,
    pub shop_domain: String,
    /// Time a mutation stays "in progress" between taking its idempotency key and applying;
    /// non-zero makes `IDEMPOTENCY_CONCURRENT_REQUEST` observable.
    pub mutation_processing_time: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_version: "any".into(),
            access_token: "shpat_sim_token".into(),
            webhook_secret: "shpss_sim_secret".into(),
            webhook_url: None,
            webhook_topics: vec![
                "orders/create".into(),
                "orders/cancelled".into(),
                "refunds/create".into(),
            ],
            webhook_api_version: "2026-01".into(),
            webhook_retry_delays: (0..8).map(|i| Duration::from_secs(60 << i)).collect(),
            webhook_timeout: Duration::from_secs(5),
            delete_subscription_after_retries: true,
            bucket_size: 1000.0,
            restore_rate: 50.0,
            throttle_status: 200,
            max_query_cost: 1000.0,
            shop_domain: "stockd-sim.myshopify.com".into(),
            mutation_processing_time: Duration::ZERO,
        }
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let sim = Arc::new(Shopify {
        state: Arc::new(Mutex::new(State::new(&config))),
        config,
        core,
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql_handler))
        .with_state(sim)
        .merge(sim_router(backend.clone()))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"errors": "Not Found"})),
            )
        });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve(router, listener, backend)
}

const V2026_01: u32 = 202601;
const V2026_04: u32 = 202604;
const V2026_07: u32 = 202607;
const V2026_10: u32 = 202610;

/// `2026-01` → 202601; `unstable` → newest.
fn parse_version(v: &str) -> Option<u32> {
    if v == "unstable" {
        return Some(999_912);
    }
    let (y, m) = v.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: u32 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if !(2019..=2099).contains(&y) || ![1, 4, 7, 10].contains(&m) {
        return None;
    }
    Some(y * 100 + m)
}

#[derive(Debug, Clone, Copy, Default)]
struct Quantities {
    available: i64,
    committed: i64,
    reserved: i64,
    damaged: i64,
    quality_control: i64,
    safety_stock: i64,
    incoming: i64,
}

impl Quantities {
    fn on_hand(&self) -> i64 {
        self.available
            + self.committed
            + self.reserved
            + self.damaged
            + self.quality_control
            + self.safety_stock
    }
    fn get(&self, name: &str) -> Option<i64> {
        Some(match name {
            "available" => self.available,
            "committed" => self.committed,
            "reserved" => self.reserved,
            "damaged" => self.damaged,
            "quality_control" => self.quality_control,
            "safety_stock" => self.safety_stock,
            "incoming" => self.incoming,
            "on_hand" => self.on_hand(),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Level {
    q: Quantities,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone)]
struct Item {
    id: u64,
    sku: String,
    variant_id: u64,
    product_id: u64,
    created_at: String,
    updated_at: String,
    levels: BTreeMap<u64, Level>,
}

#[derive(Debug, Clone)]
struct LineItem {
    id: u64,
    item_id: u64,
    variant_id: u64,
    product_id: u64,
    sku: String,
    quantity: i64,
}

#[derive(Debug, Clone)]
struct Order {
    id: u64,
    number: u64,
    created_at: String,
    cancelled_at: Option<String>,
    refunded: bool,
    lines: Vec<LineItem>,
    location_id: u64,
}

#[derive(Debug, Clone)]
struct Change {
    name: String,
    delta: i64,
    after: i64,
    item: u64,
    loc: u64,
}

#[derive(Debug, Clone)]
struct Group {
    id: u64,
    created_at: String,
    reason: String,
    reference: Option<String>,
    changes: Vec<Change>,
}

#[derive(Debug, Clone)]
struct UserErr {
    code: &'static str,
    field: Option<Vec<String>>,
    message: String,
}

#[derive(Debug, Clone)]
struct Outcome {
    /// `inventoryAdjustQuantities` rather than `inventorySetQuantities`.
    adjust: bool,
    group: Option<Group>,
    errors: Vec<UserErr>,
}

enum Idem {
    InProgress,
    Done(String, Outcome),
}

struct Bucket {
    max: f64,
    rate: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self) {
        let now = Instant::now();
        self.level =
            (self.level + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.max);
        self.at = now;
    }
    fn status(&self) -> Value {
        json!({"maximumAvailable": self.max, "currentlyAvailable": self.level.floor() as i64, "restoreRate": self.rate})
    }
}

/// An order a customer may still cancel or refund: its id and a copy.
fn open_order(st: &State, order_id: &str) -> Result<(u64, Order), SimError> {
    let id: u64 = order_id
        .parse()
        .map_err(|_| SimError::UnknownOrder(order_id.into()))?;
    let order = st
        .orders
        .get(&id)
        .cloned()
        .ok_or_else(|| SimError::UnknownOrder(order_id.into()))?;
    if order.cancelled_at.is_some() || order.refunded {
        return Err(SimError::InvalidState(
            "order already cancelled or refunded".into(),
        ));
    }
    Ok((id, order))
}

struct State {
    items: BTreeMap<u64, Item>,
    by_sku: HashMap<String, u64>,
    /// (id, name); the first is where listings are stocked, the second stocks nothing.
    locations: Vec<(u64, String)>,
    orders: HashMap<u64, Order>,
    idem: HashMap<String, Idem>,
    webhook_url: Option<String>,
    bucket: Bucket,
    next_item: u64,
    next_variant: u64,
    next_product: u64,
    next_order: u64,
    next_line: u64,
    next_group: u64,
    next_refund: u64,
    order_number: u64,
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl State {
    fn new(c: &Config) -> State {
        State {
            items: BTreeMap::new(),
            by_sku: HashMap::new(),
            locations: vec![
                (71_234_567_001, "Main warehouse".into()),
                (71_234_567_002, "Pop-up store".into()),
            ],
            orders: HashMap::new(),
            idem: HashMap::new(),
            webhook_url: c.webhook_url.clone(),
            bucket: Bucket {
                max: c.bucket_size,
                rate: c.restore_rate,
                level: c.bucket_size,
                at: Instant::now(),
            },
            next_item: 48_000_000_001,
            next_variant: 44_000_000_001,
            next_product: 8_000_000_001,
            // Ids above 2^53, as real REST ids can be (§1.1).
            next_order: 9_007_199_254_741_001,
            next_line: 14_000_000_001,
            next_group: 30_000_000_001,
            next_refund: 900_000_001,
            order_number: 1001,
        }
    }

    fn primary(&self) -> u64 {
        self.locations[0].0
    }

    fn listing(&self, item: &Item) -> SimListing {
        let loc = self.primary();
        let avail = item.levels.get(&loc).map(|l| l.q.available).unwrap_or(0);
        let mut external = Map::new();
        external.insert(
            "inventory_item_id".into(),
            json!(format!("gid://shopify/InventoryItem/{}", item.id)),
        );
        external.insert(
            "location_id".into(),
            json!(format!("gid://shopify/Location/{loc}")),
        );
        external.insert(
            "variant_id".into(),
            json!(format!("gid://shopify/ProductVariant/{}", item.variant_id)),
        );
        SimListing {
            sku: item.sku.clone(),
            external,
            quantity: avail,
            availability: if avail > 0 {
                "in_stock"
            } else {
                "out_of_stock"
            }
            .into(),
        }
    }
}

struct Shopify {
    config: Config,
    core: Arc<SimCore>,
    state: Arc<Mutex<State>>,
}

// ---------------------------------------------------------------------------------------------
// GID helpers

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn level_gid(item: u64, loc: u64) -> String {
    format!("gid://shopify/InventoryLevel/{loc}?inventory_item_id={item}")
}

/// `gid://shopify/Kind/123[?query]` → (Kind, 123, query).
fn parse_gid(s: &str) -> Option<(&str, u64, Option<&str>)> {
    let rest = s.strip_prefix("gid://shopify/")?;
    let (kind, tail) = rest.split_once('/')?;
    let (num, q) = match tail.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (tail, None),
    };
    Some((kind, num.parse().ok()?, q))
}

fn parse_level_gid(s: &str) -> Option<(u64, u64)> {
    let (kind, loc, q) = parse_gid(s)?;
    if kind != "InventoryLevel" {
        return None;
    }
    let item = q?.strip_prefix("inventory_item_id=")?.parse().ok()?;
    Some((item, loc))
}

// ---------------------------------------------------------------------------------------------
// The mini schema

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Scalar,
    Obj(&'static str),
    List(&'static str),
    /// (connection type, node type)
    Conn(&'static str, &'static str),
}

type Args = &'static [(&'static str, &'static str)];

const CONN_ARGS: Args = &[
    ("first", "Int"),
    ("last", "Int"),
    ("after", "String"),
    ("before", "String"),
    ("reverse", "Boolean"),
    ("query", "String"),
];

const NODE_TYPES: &[&str] = &[
    "InventoryItem",
    "InventoryLevel",
    "Location",
    "ProductVariant",
    "Product",
];

const CONNECTIONS: &[(&str, &str, &str)] = &[
    (
        "InventoryItem",
        "InventoryItemConnection",
        "InventoryItemEdge",
    ),
    (
        "InventoryLevel",
        "InventoryLevelConnection",
        "InventoryLevelEdge",
    ),
    ("Location", "LocationConnection", "LocationEdge"),
    (
        "ProductVariant",
        "ProductVariantConnection",
        "ProductVariantEdge",
    ),
];

fn field_def(ty: &str, name: &str) -> Option<(Kind, Args)> {
    use Kind::*;
    const NONE: Args = &[];
    let s = |_: ()| Some((Scalar, NONE));
    for (node, conn, edge) in CONNECTIONS {
        if ty == *conn {
            return match name {
                "edges" => Some((List(edge), NONE)),
                "nodes" => Some((List(node), NONE)),
                "pageInfo" => Some((Obj("PageInfo"), NONE)),
                _ => None,
            };
        }
        if ty == *edge {
            return match name {
                "cursor" => s(()),
                "node" => Some((Obj(node), NONE)),
                _ => None,
            };
        }
    }
    match (ty, name) {
        ("QueryRoot", "inventoryItems") => {
            Some((Conn("InventoryItemConnection", "InventoryItem"), CONN_ARGS))
        }
        ("QueryRoot", "inventoryItem") => Some((Obj("InventoryItem"), &[("id", "ID!")])),
        ("QueryRoot", "inventoryLevel") => Some((Obj("InventoryLevel"), &[("id", "ID!")])),
        ("QueryRoot", "location") => Some((Obj("Location"), &[("id", "ID")])),
        ("QueryRoot", "locations") => Some((Conn("LocationConnection", "Location"), CONN_ARGS)),
        ("QueryRoot", "productVariant") => Some((Obj("ProductVariant"), &[("id", "ID!")])),
        ("QueryRoot", "productVariants") => Some((
            Conn("ProductVariantConnection", "ProductVariant"),
            CONN_ARGS,
        )),
        ("QueryRoot", "node") => Some((Obj("Node"), &[("id", "ID!")])),
        ("QueryRoot", "nodes") => Some((List("Node"), &[("ids", "[ID!]!")])),
        ("Mutation", "inventorySetQuantities") => Some((
            Obj("InventorySetQuantitiesPayload"),
            &[("input", "InventorySetQuantitiesInput!")],
        )),
        ("Mutation", "inventoryAdjustQuantities") => Some((
            Obj("InventoryAdjustQuantitiesPayload"),
            &[("input", "InventoryAdjustQuantitiesInput!")],
        )),
        ("InventoryAdjustQuantitiesPayload", "inventoryAdjustmentGroup") => {
            Some((Obj("InventoryAdjustmentGroup"), NONE))
        }
        ("InventoryAdjustQuantitiesPayload", "userErrors") => {
            Some((List("InventoryAdjustQuantitiesUserError"), NONE))
        }
        ("InventoryAdjustQuantitiesUserError", "code" | "field" | "message") => s(()),
        (
            "InventoryItem",
            "id" | "sku" | "tracked" | "legacyResourceId" | "createdAt" | "updatedAt",
        )
        | ("InventoryItem", "requiresShipping" | "duplicateSkuCount") => s(()),
        ("InventoryItem", "inventoryLevel") => {
            Some((Obj("InventoryLevel"), &[("locationId", "ID!")]))
        }
        ("InventoryItem", "inventoryLevels") => Some((
            Conn("InventoryLevelConnection", "InventoryLevel"),
            CONN_ARGS,
        )),
        ("InventoryItem", "variant") => Some((Obj("ProductVariant"), NONE)),
        (
            "InventoryLevel",
            "id" | "createdAt" | "updatedAt" | "canDeactivate" | "deactivationAlert" | "available",
        ) => s(()),
        ("InventoryLevel", "item") => Some((Obj("InventoryItem"), NONE)),
        ("InventoryLevel", "location") => Some((Obj("Location"), NONE)),
        ("InventoryLevel", "quantities") => {
            Some((List("InventoryQuantity"), &[("names", "[String!]!")]))
        }
        ("InventoryQuantity", "id" | "name" | "quantity" | "updatedAt") => s(()),
        ("Location", "id" | "name" | "legacyResourceId" | "isActive") => s(()),
        ("Location", "inventoryLevel") => {
            Some((Obj("InventoryLevel"), &[("inventoryItemId", "ID!")]))
        }
        (
            "ProductVariant",
            "id" | "sku" | "title" | "displayName" | "legacyResourceId" | "inventoryQuantity",
        ) => s(()),
        ("ProductVariant", "inventoryItem") => Some((Obj("InventoryItem"), NONE)),
        ("ProductVariant", "product") => Some((Obj("Product"), NONE)),
        ("Product", "id" | "title" | "handle" | "legacyResourceId") => s(()),
        ("PageInfo", "hasNextPage" | "hasPreviousPage" | "startCursor" | "endCursor") => s(()),
        ("InventorySetQuantitiesPayload", "inventoryAdjustmentGroup") => {
            Some((Obj("InventoryAdjustmentGroup"), NONE))
        }
        ("InventorySetQuantitiesPayload", "userErrors") => {
            Some((List("InventorySetQuantitiesUserError"), NONE))
        }
        ("InventoryAdjustmentGroup", "id" | "createdAt" | "reason" | "referenceDocumentUri") => {
            s(())
        }
        ("InventoryAdjustmentGroup", "changes") => Some((
            List("InventoryChange"),
            &[
                ("inventoryItemIds", "[ID!]"),
                ("locationIds", "[ID!]"),
                ("quantityNames", "[String!]"),
            ],
        )),
        ("InventoryChange", "name" | "delta" | "quantityAfterChange" | "ledgerDocumentUri") => {
            s(())
        }
        ("InventoryChange", "item") => Some((Obj("InventoryItem"), NONE)),
        ("InventoryChange", "location") => Some((Obj("Location"), NONE)),
        ("InventorySetQuantitiesUserError", "code" | "field" | "message") => s(()),
        ("Node", "id") => s(()),
        _ => None,
    }
}

fn type_cond_applies(cond: &str, ty: &str) -> bool {
    cond == ty
        || (ty == "Node" && NODE_TYPES.contains(&cond))
        || (cond == "Node" && NODE_TYPES.contains(&ty))
}

fn is_input_type(t: &str) -> bool {
    let base = t.trim_matches(|c| c == '[' || c == ']' || c == '!');
    matches!(
        base,
        "ID" | "String"
            | "Int"
            | "Boolean"
            | "Float"
            | "InventorySetQuantitiesInput"
            | "InventoryQuantityInput"
            | "InventorySetQuantityInput"
            | "InventoryAdjustQuantitiesInput"
            | "InventoryChangeInput"
    )
}

// ---------------------------------------------------------------------------------------------
// Errors

fn gql_error(
    message: impl Into<String>,
    pos: Option<(usize, usize)>,
    path: &[String],
    ext: Value,
) -> Value {
    let mut e = Map::new();
    e.insert("message".into(), json!(message.into()));
    if let Some((l, c)) = pos {
        e.insert("locations".into(), json!([{"line": l, "column": c}]));
    }
    if !path.is_empty() {
        e.insert("path".into(), json!(path));
    }
    if !ext.is_null() {
        e.insert("extensions".into(), ext);
    }
    Value::Object(e)
}

struct Check<'a> {
    doc: &'a Document,
    vars: &'a HashMap<String, String>,
    version: u32,
    errors: Vec<Value>,
    depth: usize,
}

impl Check<'_> {
    /// Validate `sels` against type `ty`; returns the requested cost of the selection.
    fn selection(&mut self, ty: &str, sels: &[Selection], path: &mut Vec<String>) -> f64 {
        self.depth += 1;
        if self.depth > 40 {
            self.errors.push(gql_error(
                "Query has depth too deep",
                None,
                path,
                Value::Null,
            ));
            self.depth -= 1;
            return 0.0;
        }
        let mut cost = 0.0;
        for sel in sels {
            match sel {
                Selection::Field(f) => cost += self.field(ty, f, path),
                Selection::Spread { name, pos, .. } => match self.doc.fragments.get(name) {
                    None => self.errors.push(gql_error(
                        format!("Fragment {name} was used, but not defined"),
                        Some(*pos),
                        path,
                        json!({"code": "useAndDefineFragment", "fragmentName": name}),
                    )),
                    Some(fr) => {
                        if !type_cond_applies(&fr.type_cond, ty) {
                            self.errors.push(gql_error(
                                format!(
                                    "Fragment {name} on {} can't be spread inside {ty}",
                                    fr.type_cond
                                ),
                                Some(*pos),
                                path,
                                json!({"code": "cannotSpreadFragment"}),
                            ));
                        } else {
                            let t = if ty == "Node" {
                                fr.type_cond.clone()
                            } else {
                                ty.to_string()
                            };
                            cost += self.selection(&t, &fr.selection, path);
                        }
                    }
                },
                Selection::Inline {
                    type_cond,
                    selection,
                    pos,
                    ..
                } => {
                    let t = type_cond.clone().unwrap_or_else(|| ty.to_string());
                    if !type_cond_applies(&t, ty) {
                        self.errors.push(gql_error(
                            format!("Fragment on {t} can't be spread inside {ty}"),
                            Some(*pos),
                            path,
                            json!({"code": "cannotSpreadFragment"}),
                        ));
                    } else {
                        cost += self.selection(&t, selection, path);
                    }
                }
            }
        }
        self.depth -= 1;
        cost
    }

    fn field(&mut self, ty: &str, f: &Field, path: &mut Vec<String>) -> f64 {
        path.push(f.key().to_string());
        let cost = self.field_inner(ty, f, path);
        path.pop();
        cost
    }

    fn field_inner(&mut self, ty: &str, f: &Field, path: &mut Vec<String>) -> f64 {
        for d in &f.directives {
            let known = match d.name.as_str() {
                "skip" | "include" => true,
                "idempotent" => self.version >= V2026_01,
                _ => false,
            };
            if !known {
                self.errors.push(gql_error(
                    format!("Directive @{} is not defined", d.name),
                    Some(d.pos),
                    path,
                    json!({"code": "undefinedDirective", "directiveName": d.name}),
                ));
            }
            for (_, v) in &d.args {
                self.var_used(v, "", f, path);
            }
        }
        if f.name == "__typename" {
            return 0.0;
        }
        let Some((kind, args)) = field_def(ty, &f.name) else {
            self.errors.push(gql_error(
                format!("Field '{}' doesn't exist on type '{ty}'", f.name),
                Some(f.pos),
                path,
                json!({"code": "undefinedField", "typeName": ty, "fieldName": f.name}),
            ));
            return 0.0;
        };
        for (an, av) in &f.args {
            match args.iter().find(|(n, _)| n == an) {
                None => self.errors.push(gql_error(
                    format!("Field '{}' doesn't accept argument '{an}'", f.name),
                    Some(f.pos),
                    path,
                    json!({"code": "argumentNotAccepted", "name": f.name, "typeName": "Field", "argumentName": an}),
                )),
                Some((_, at)) => self.var_used(av, at, f, path),
            }
        }
        let missing: Vec<&str> = args
            .iter()
            .filter(|(n, t)| t.ends_with('!') && f.arg(n).is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            self.errors.push(gql_error(
                format!("Field '{}' is missing required arguments: {}", f.name, missing.join(", ")),
                Some(f.pos),
                path,
                json!({"code": "missingRequiredArguments", "className": "Field", "name": f.name, "arguments": missing.join(", ")}),
            ));
        }
        let target = match kind {
            Kind::Scalar => {
                if !f.selection.is_empty() {
                    self.errors.push(gql_error(
                        format!("Selections can't be made on scalars (field '{}' returns a scalar but has selections)", f.name),
                        Some(f.pos),
                        path,
                        json!({"code": "selectionMismatch", "nodeName": f.name}),
                    ));
                }
                return 0.0;
            }
            Kind::Obj(t) | Kind::List(t) | Kind::Conn(t, _) => t,
        };
        if f.selection.is_empty() {
            self.errors.push(gql_error(
                format!(
                    "Field must have selections (field '{}' returns {target} but has no selections. Did you mean '{} {{ ... }}'?)",
                    f.name, f.name
                ),
                Some(f.pos),
                path,
                json!({"code": "selectionMismatch", "nodeName": f.name, "typeName": target}),
            ));
            return 0.0;
        }
        let child = self.selection(target, &f.selection, path);
        match kind {
            // Mutations cost a flat 10 points (§1.6, Shopify's published rule).
            Kind::Obj(_) if ty == "Mutation" => 10.0,
            Kind::Obj(_) => 1.0 + child,
            Kind::List(_) if f.name == "nodes" && ty == "QueryRoot" => {
                let n = match f.arg("ids") {
                    Some(GValue::List(l)) => l.len() as f64,
                    _ => 1.0,
                };
                n * (1.0 + child)
            }
            // Inside a connection, `edges` and `nodes` are priced per node by the connection.
            Kind::List(_) if ty.ends_with("Connection") && f.name == "edges" => child,
            Kind::List(_) if ty.ends_with("Connection") => 1.0 + child,
            Kind::List(_) => 1.0 + child,
            Kind::Conn(..) => {
                let first = match (f.arg("first"), f.arg("last")) {
                    (Some(GValue::Int(n)), _) | (_, Some(GValue::Int(n))) => *n as f64,
                    _ => 1.0,
                };
                // Connection cost scaling by `first` is UNCONFIRMED (§1.6): 2 + first × node cost.
                2.0 + first * child.max(1.0)
            }
            Kind::Scalar => 0.0,
        }
    }

    fn var_used(&mut self, v: &GValue, expected: &str, f: &Field, path: &[String]) {
        match v {
            GValue::Var(name) => match self.vars.get(name) {
                None => self.errors.push(gql_error(
                    format!("Variable ${name} is used by {} but not declared", f.name),
                    Some(f.pos),
                    path,
                    json!({"code": "variableNotDefined", "variableName": name}),
                )),
                Some(decl) => {
                    if !expected.is_empty() {
                        let ok = decl == expected
                            || *decl == format!("{expected}!")
                            || types_compatible(decl, expected);
                        if !ok {
                            self.errors.push(gql_error(
                                format!("Type mismatch on variable ${name} and argument {} ({decl} / {expected})", f.name),
                                Some(f.pos),
                                path,
                                json!({"code": "variableMismatch", "variableName": name, "typeName": decl}),
                            ));
                        }
                    }
                }
            },
            GValue::List(items) => {
                for i in items {
                    self.var_used(i, "", f, path);
                }
            }
            GValue::Object(fields) => {
                for (_, i) in fields {
                    self.var_used(i, "", f, path);
                }
            }
            _ => {}
        }
    }
}

/// `[ID!]!` declared for `[ID!]` etc.: a stricter variable type may flow into a looser argument.
fn types_compatible(decl: &str, expected: &str) -> bool {
    let d = decl.strip_suffix('!').unwrap_or(decl);
    if d == expected {
        return true;
    }
    let e = expected.strip_suffix('!').unwrap_or(expected);
    match (d.strip_prefix('['), e.strip_prefix('[')) {
        (Some(di), Some(ei)) => {
            types_compatible(di.trim_end_matches(']'), ei.trim_end_matches(']'))
                && d.ends_with(']')
                && e.ends_with(']')
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Input coercion (variables and literals)

struct Problem {
    path: Vec<Value>,
    explanation: String,
}

fn input_fields(ty: &str, version: u32) -> Option<Vec<(&'static str, String)>> {
    let qi = if version >= V2026_07 {
        "InventorySetQuantityInput"
    } else {
        "InventoryQuantityInput"
    };
    match ty {
        "InventorySetQuantitiesInput" => {
            let mut v = vec![
                ("name", "String!".to_string()),
                ("reason", "String!".to_string()),
                ("referenceDocumentUri", "String".to_string()),
                ("quantities", format!("[{qi}!]!")),
            ];
            if version < V2026_04 {
                v.push(("ignoreCompareQuantity", "Boolean".into()));
            }
            Some(v)
        }
        "InventoryAdjustQuantitiesInput" => Some(vec![
            ("name", "String!".to_string()),
            ("reason", "String!".to_string()),
            ("referenceDocumentUri", "String".to_string()),
            ("changes", "[InventoryChangeInput!]!".to_string()),
        ]),
        "InventoryChangeInput" => {
            let mut v = vec![
                ("delta", "Int!".to_string()),
                ("inventoryItemId", "ID!".to_string()),
                ("locationId", "ID!".to_string()),
                ("ledgerDocumentUri", "String".to_string()),
            ];
            if version >= V2026_01 {
                v.push(("changeFromQuantity", "Int".into()));
            }
            Some(v)
        }
        t if t == qi => {
            let mut v = vec![
                ("inventoryItemId", "ID!".to_string()),
                ("locationId", "ID!".to_string()),
                ("quantity", "Int!".to_string()),
            ];
            if version < V2026_04 {
                v.push(("compareQuantity", "Int".into()));
            }
            if version >= V2026_01 {
                v.push(("changeFromQuantity", "Int".into()));
            }
            Some(v)
        }
        _ => None,
    }
}

fn coerce(
    v: &Value,
    ty: &str,
    version: u32,
    path: &mut Vec<Value>,
    problems: &mut Vec<Problem>,
) -> Value {
    let (inner, non_null) = match ty.strip_suffix('!') {
        Some(t) => (t, true),
        None => (ty, false),
    };
    if v.is_null() {
        if non_null {
            problems.push(Problem {
                path: path.clone(),
                explanation: "Expected value to not be null".into(),
            });
        }
        return Value::Null;
    }
    if let Some(elem) = inner.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let items: Vec<Value> = match v {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            path.push(json!(i));
            out.push(coerce(it, elem, version, path, problems));
            path.pop();
        }
        return Value::Array(out);
    }
    let bad = |problems: &mut Vec<Problem>, path: &Vec<Value>| {
        problems.push(Problem {
            path: path.clone(),
            explanation: format!("Could not coerce value {v} to {inner}"),
        });
        Value::Null
    };
    match inner {
        "Int" => match v.as_i64() {
            Some(n) if i32::try_from(n).is_ok() && !v.is_f64() => json!(n),
            _ => bad(problems, path),
        },
        "Float" => match v.as_f64() {
            Some(f) => json!(f),
            None => bad(problems, path),
        },
        "String" => match v {
            Value::String(_) => v.clone(),
            _ => bad(problems, path),
        },
        "ID" => match v {
            Value::String(_) => v.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => json!(n.to_string()),
            _ => bad(problems, path),
        },
        "Boolean" => match v {
            Value::Bool(_) => v.clone(),
            _ => bad(problems, path),
        },
        t => {
            let Some(fields) = input_fields(t, version) else {
                return bad(problems, path);
            };
            let Value::Object(m) = v else {
                return bad(problems, path);
            };
            let mut out = Map::new();
            for (k, x) in m {
                match fields.iter().find(|(n, _)| n == k) {
                    None => {
                        path.push(json!(k));
                        problems.push(Problem {
                            path: path.clone(),
                            explanation: format!("Field is not defined on {t}"),
                        });
                        path.pop();
                    }
                    Some((_, ft)) => {
                        path.push(json!(k));
                        out.insert(k.clone(), coerce(x, ft, version, path, problems));
                        path.pop();
                    }
                }
            }
            for (n, ft) in &fields {
                if ft.ends_with('!') && !m.contains_key(*n) {
                    path.push(json!(n));
                    problems.push(Problem {
                        path: path.clone(),
                        explanation: "Expected value to not be null".into(),
                    });
                    path.pop();
                }
            }
            Value::Object(out)
        }
    }
}

fn literal_to_json(v: &GValue, vars: &Map<String, Value>) -> Value {
    match v {
        GValue::Var(n) => vars.get(n).cloned().unwrap_or(Value::Null),
        GValue::Int(i) => json!(i),
        GValue::Float(f) => json!(f),
        GValue::Str(s) | GValue::Enum(s) => json!(s),
        GValue::Bool(b) => json!(b),
        GValue::Null => Value::Null,
        GValue::List(l) => Value::Array(l.iter().map(|x| literal_to_json(x, vars)).collect()),
        GValue::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), literal_to_json(x, vars)))
                .collect(),
        ),
    }
}

fn contains_var(v: &GValue) -> bool {
    match v {
        GValue::Var(_) => true,
        GValue::List(l) => l.iter().any(contains_var),
        GValue::Object(o) => o.iter().any(|(_, x)| contains_var(x)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

#[derive(Debug, Clone)]
enum Obj {
    Query,
    Item(u64),
    Level(u64, u64),
    Quantity {
        item: u64,
        loc: u64,
        name: String,
    },
    Location(u64),
    Variant(u64),
    Product(u64),
    Conn {
        /// The schema type of the nodes (`InventoryItem`): names the
        /// connection and edge types for `__typename`.
        node_type: &'static str,
        nodes: Vec<Obj>,
        has_next: bool,
        has_prev: bool,
    },
    Edge(Box<Obj>, &'static str),
    PageInfo {
        has_next: bool,
        has_prev: bool,
        start: Option<String>,
        end: Option<String>,
    },
    Payload(Outcome),
    Group(Group),
    Change(Change),
    UserError(UserErr, bool),
}

fn typename(o: &Obj) -> &'static str {
    match o {
        Obj::Query => "QueryRoot",
        Obj::Item(_) => "InventoryItem",
        Obj::Level(..) => "InventoryLevel",
        Obj::Quantity { .. } => "InventoryQuantity",
        Obj::Location(_) => "Location",
        Obj::Variant(_) => "ProductVariant",
        Obj::Product(_) => "Product",
        Obj::Conn { node_type, .. } => connection_types(node_type).0,
        Obj::Edge(_, node_type) => connection_types(node_type).1,
        Obj::PageInfo { .. } => "PageInfo",
        Obj::Payload(o) if o.adjust => "InventoryAdjustQuantitiesPayload",
        Obj::Payload(_) => "InventorySetQuantitiesPayload",
        Obj::Group(_) => "InventoryAdjustmentGroup",
        Obj::Change(_) => "InventoryChange",
        Obj::UserError(_, true) => "InventoryAdjustQuantitiesUserError",
        Obj::UserError(_, false) => "InventorySetQuantitiesUserError",
    }
}

/// The connection and edge type names of a node type, as the schema names
/// them (`InventoryItemConnection`, `InventoryItemEdge`).
fn connection_types(node_type: &str) -> (&'static str, &'static str) {
    CONNECTIONS
        .iter()
        .find(|(node, _, _)| *node == node_type)
        .map(|(_, conn, edge)| (*conn, *edge))
        .unwrap_or(("", ""))
}

fn cursor_for(o: &Obj) -> String {
    use base64::Engine as _;
    let id = match o {
        Obj::Item(i) | Obj::Location(i) | Obj::Variant(i) => *i,
        Obj::Level(_, l) => *l,
        _ => 0,
    };
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"last_id\":{id}}}"))
}

fn decode_cursor(c: &str) -> Option<u64> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("last_id")?.as_u64()
}

fn obj_id(o: &Obj) -> u64 {
    match o {
        Obj::Item(i) | Obj::Location(i) | Obj::Variant(i) => *i,
        Obj::Level(_, l) => *l,
        _ => 0,
    }
}

struct Exec<'a> {
    st: &'a State,
    vars: &'a Map<String, Value>,
    doc: &'a Document,
    actual: f64,
    errors: Vec<Value>,
}

fn included(vars: &Map<String, Value>, ds: &[graphql::Directive]) -> bool {
    for d in ds {
        let cond = d
            .args
            .iter()
            .find(|(n, _)| n == "if")
            .map(|(_, v)| literal_to_json(v, vars).as_bool().unwrap_or(false));
        match (d.name.as_str(), cond) {
            ("skip", Some(true)) | ("include", Some(false)) => return false,
            _ => {}
        }
    }
    true
}

/// Flatten fragments into the fields that apply to concrete type `ty`, honouring @skip/@include.
fn collect<'f>(
    doc: &'f Document,
    vars: &Map<String, Value>,
    ty: &str,
    sels: &'f [Selection],
    out: &mut Vec<&'f Field>,
) {
    for s in sels {
        match s {
            Selection::Field(f) => {
                if included(vars, &f.directives) {
                    out.push(f);
                }
            }
            Selection::Spread {
                name, directives, ..
            } => {
                if let Some(fr) = doc.fragments.get(name) {
                    if included(vars, directives) && (fr.type_cond == ty || fr.type_cond == "Node")
                    {
                        collect(doc, vars, ty, &fr.selection, out);
                    }
                }
            }
            Selection::Inline {
                type_cond,
                directives,
                selection,
                ..
            } => {
                let applies = type_cond.as_deref().is_none_or(|t| t == ty || t == "Node");
                if applies && included(vars, directives) {
                    collect(doc, vars, ty, selection, out);
                }
            }
        }
    }
}

impl Exec<'_> {
    fn arg(&self, f: &Field, name: &str) -> Value {
        f.arg(name)
            .map(|v| literal_to_json(v, self.vars))
            .unwrap_or(Value::Null)
    }

    fn render(&mut self, o: &Obj, sels: &[Selection], path: &mut Vec<String>) -> Value {
        let mut fields = Vec::new();
        let ty = typename(o);
        let doc = self.doc;
        collect(doc, self.vars, ty, sels, &mut fields);
        let mut out = Map::new();
        for f in fields {
            path.push(f.key().to_string());
            let v = self.field(o, f, path);
            path.pop();
            out.insert(f.key().to_string(), v);
        }
        Value::Object(out)
    }

    fn sub(&mut self, o: Option<Obj>, f: &Field, path: &mut Vec<String>) -> Value {
        match o {
            Some(o) => {
                self.actual += 1.0;
                self.render(&o, &f.selection, path)
            }
            None => Value::Null,
        }
    }

    fn item_exists(&self, id: u64) -> Option<Obj> {
        self.st.items.contains_key(&id).then_some(Obj::Item(id))
    }

    fn node_from_gid(&self, s: &str) -> Option<Obj> {
        if let Some((item, loc)) = parse_level_gid(s) {
            return self.level(item, loc);
        }
        let (kind, id, _) = parse_gid(s)?;
        match kind {
            "InventoryItem" => self.item_exists(id),
            "Location" => self
                .st
                .locations
                .iter()
                .any(|(l, _)| *l == id)
                .then_some(Obj::Location(id)),
            "ProductVariant" => self
                .st
                .items
                .values()
                .any(|i| i.variant_id == id)
                .then_some(Obj::Variant(id)),
            "Product" => self
                .st
                .items
                .values()
                .any(|i| i.product_id == id)
                .then_some(Obj::Product(id)),
            _ => None,
        }
    }

    fn level(&self, item: u64, loc: u64) -> Option<Obj> {
        self.st
            .items
            .get(&item)?
            .levels
            .get(&loc)
            .map(|_| Obj::Level(item, loc))
    }

    fn item_of_variant(&self, vid: u64) -> Option<&Item> {
        self.st.items.values().find(|i| i.variant_id == vid)
    }

    fn connection(
        &mut self,
        node_type: &'static str,
        all: Vec<Obj>,
        f: &Field,
        path: &mut Vec<String>,
    ) -> Value {
        let first = self.arg(f, "first").as_i64();
        let last = self.arg(f, "last").as_i64();
        let mut list = all;
        if self.arg(f, "reverse").as_bool() == Some(true) {
            list.reverse();
        }
        if let Some(q) = self.arg(f, "query").as_str() {
            list = self.filter(list, q);
        }
        let total = list.len();
        let mut start = 0usize;
        let mut end = total;
        if let Some(a) = self.arg(f, "after").as_str().and_then(decode_cursor) {
            start = list
                .iter()
                .position(|o| obj_id(o) == a)
                .map(|p| p + 1)
                .unwrap_or(total);
        }
        if let Some(b) = self.arg(f, "before").as_str().and_then(decode_cursor) {
            end = list.iter().position(|o| obj_id(o) == b).unwrap_or(end);
        }
        let end = end.max(start);
        let (s, e) = match (first, last) {
            (Some(n), _) => (start, (start + n.max(0) as usize).min(end)),
            (None, Some(n)) => (end.saturating_sub(n.max(0) as usize).max(start), end),
            _ => (start, end),
        };
        let nodes: Vec<Obj> = list[s..e].to_vec();
        self.actual += 2.0;
        let conn = Obj::Conn {
            node_type,
            nodes,
            has_next: e < end || e < total,
            has_prev: s > 0,
        };
        self.render(&conn, &f.selection, path)
    }

    /// Shopify search syntax, the subset needed here: `sku:X`, `id:N`, space = AND.
    fn filter(&self, list: Vec<Obj>, q: &str) -> Vec<Obj> {
        let terms: Vec<(String, String)> = q
            .split_whitespace()
            .filter_map(|t| t.split_once(':'))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches(|c| c == '"' || c == '\'').to_string(),
                )
            })
            .collect();
        list.into_iter()
            .filter(|o| {
                terms.iter().all(|(k, v)| match (k.as_str(), o) {
                    ("sku", Obj::Item(i)) => self.st.items.get(i).is_some_and(|it| it.sku == *v),
                    ("sku", Obj::Variant(vid)) => {
                        self.item_of_variant(*vid).is_some_and(|it| it.sku == *v)
                    }
                    ("id", o) => v.parse::<u64>().ok() == Some(obj_id(o)),
                    _ => true,
                })
            })
            .collect()
    }

    fn field(&mut self, o: &Obj, f: &Field, path: &mut Vec<String>) -> Value {
        if f.name == "__typename" {
            return json!(typename(o));
        }
        let st = self.st;
        match o {
            Obj::Query => match f.name.as_str() {
                "inventoryItems" => {
                    let all = st.items.keys().map(|i| Obj::Item(*i)).collect();
                    self.connection("InventoryItem", all, f, path)
                }
                "productVariants" => {
                    let all = st
                        .items
                        .values()
                        .map(|i| Obj::Variant(i.variant_id))
                        .collect();
                    self.connection("ProductVariant", all, f, path)
                }
                "locations" => {
                    let all = st
                        .locations
                        .iter()
                        .map(|(l, _)| Obj::Location(*l))
                        .collect();
                    self.connection("Location", all, f, path)
                }
                "inventoryItem" => {
                    let o = parse_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "InventoryItem")
                        .and_then(|(_, id, _)| self.item_exists(id));
                    self.sub(o, f, path)
                }
                "inventoryLevel" => {
                    let o = parse_level_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .and_then(|(i, l)| self.level(i, l));
                    self.sub(o, f, path)
                }
                "location" => {
                    let id = self.arg(f, "id");
                    let o = match id.as_str() {
                        None => Some(Obj::Location(st.primary())),
                        Some(s) => parse_gid(s).filter(|(k, _, _)| *k == "Location").and_then(
                            |(_, id, _)| {
                                st.locations
                                    .iter()
                                    .any(|(l, _)| *l == id)
                                    .then_some(Obj::Location(id))
                            },
                        ),
                    };
                    self.sub(o, f, path)
                }
                "productVariant" => {
                    let o = parse_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "ProductVariant")
                        .and_then(|(_, id, _)| self.item_of_variant(id).map(|_| Obj::Variant(id)));
                    self.sub(o, f, path)
                }
                "node" => {
                    let o = self.node_from_gid(self.arg(f, "id").as_str().unwrap_or(""));
                    self.sub(o, f, path)
                }
                "nodes" => {
                    let ids = self.arg(f, "ids");
                    let ids: Vec<String> = ids
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut out = Vec::new();
                    for (i, id) in ids.iter().enumerate() {
                        path.push(i.to_string());
                        let o = self.node_from_gid(id);
                        out.push(self.sub(o, f, path));
                        path.pop();
                    }
                    Value::Array(out)
                }
                _ => Value::Null,
            },
            Obj::Item(id) => {
                let Some(it) = st.items.get(id) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(gid("InventoryItem", it.id)),
                    "sku" => json!(it.sku),
                    "tracked" | "requiresShipping" => json!(true),
                    "legacyResourceId" => json!(it.id.to_string()),
                    "createdAt" => json!(it.created_at),
                    "updatedAt" => json!(it.updated_at),
                    "duplicateSkuCount" => json!(st
                        .items
                        .values()
                        .filter(|o| o.sku == it.sku && o.id != it.id)
                        .count()),
                    "inventoryLevel" => {
                        let loc = parse_gid(self.arg(f, "locationId").as_str().unwrap_or(""))
                            .filter(|(k, _, _)| *k == "Location")
                            .map(|(_, l, _)| l);
                        let o = loc.and_then(|l| self.level(it.id, l));
                        self.sub(o, f, path)
                    }
                    "inventoryLevels" => {
                        let all = it.levels.keys().map(|l| Obj::Level(it.id, *l)).collect();
                        self.connection("InventoryLevel", all, f, path)
                    }
                    "variant" => self.sub(Some(Obj::Variant(it.variant_id)), f, path),
                    _ => Value::Null,
                }
            }
            Obj::Level(item, loc) => {
                let Some(lv) = st.items.get(item).and_then(|i| i.levels.get(loc)) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(level_gid(*item, *loc)),
                    "createdAt" => json!(lv.created_at),
                    "updatedAt" => json!(lv.updated_at),
                    "canDeactivate" => json!(lv.q.on_hand() == 0),
                    "deactivationAlert" => Value::Null,
                    "available" => json!(lv.q.available),
                    "item" => self.sub(Some(Obj::Item(*item)), f, path),
                    "location" => self.sub(Some(Obj::Location(*loc)), f, path),
                    "quantities" => {
                        let names = self.arg(f, "names");
                        let names: Vec<String> = names
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut out = Vec::new();
                        for n in names {
                            if lv.q.get(&n).is_none() {
                                self.errors.push(gql_error(
                                    format!("The quantity name '{n}' is not valid."),
                                    Some(f.pos),
                                    path,
                                    Value::Null,
                                ));
                                continue;
                            }
                            let q = Obj::Quantity {
                                item: *item,
                                loc: *loc,
                                name: n,
                            };
                            self.actual += 1.0;
                            out.push(self.render(&q, &f.selection, path));
                        }
                        Value::Array(out)
                    }
                    _ => Value::Null,
                }
            }
            Obj::Quantity { item, loc, name } => {
                let Some(lv) = st.items.get(item).and_then(|i| i.levels.get(loc)) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(format!("gid://shopify/InventoryQuantity/{loc}?inventory_item_id={item}&name={name}")),
                    "name" => json!(name),
                    "quantity" => json!(lv.q.get(name).unwrap_or(0)),
                    "updatedAt" => json!(lv.updated_at),
                    _ => Value::Null,
                }
            }
            Obj::Location(id) => match f.name.as_str() {
                "id" => json!(gid("Location", *id)),
                "name" => json!(st
                    .locations
                    .iter()
                    .find(|(l, _)| l == id)
                    .map(|(_, n)| n.clone())),
                "legacyResourceId" => json!(id.to_string()),
                "isActive" => json!(true),
                "inventoryLevel" => {
                    let item = parse_gid(self.arg(f, "inventoryItemId").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "InventoryItem")
                        .map(|(_, i, _)| i);
                    let o = item.and_then(|i| self.level(i, *id));
                    self.sub(o, f, path)
                }
                _ => Value::Null,
            },
            Obj::Variant(vid) => {
                let Some(it) = self.item_of_variant(*vid) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(gid("ProductVariant", *vid)),
                    "sku" => json!(it.sku),
                    "title" => json!("Default Title"),
                    "displayName" => json!(format!("{} - Default Title", it.sku)),
                    "legacyResourceId" => json!(vid.to_string()),
                    "inventoryQuantity" => {
                        json!(it.levels.values().map(|l| l.q.available).sum::<i64>())
                    }
                    "inventoryItem" => self.sub(Some(Obj::Item(it.id)), f, path),
                    "product" => self.sub(Some(Obj::Product(it.product_id)), f, path),
                    _ => Value::Null,
                }
            }
            Obj::Product(pid) => {
                let sku = st
                    .items
                    .values()
                    .find(|i| i.product_id == *pid)
                    .map(|i| i.sku.clone())
                    .unwrap_or_default();
                match f.name.as_str() {
                    "id" => json!(gid("Product", *pid)),
                    "title" => json!(format!("Product {sku}")),
                    "handle" => json!(format!("product-{}", sku.to_lowercase())),
                    "legacyResourceId" => json!(pid.to_string()),
                    _ => Value::Null,
                }
            }
            Obj::Conn {
                node_type,
                nodes,
                has_next,
                has_prev,
            } => match f.name.as_str() {
                "nodes" => {
                    let mut out = Vec::new();
                    for n in nodes {
                        self.actual += 1.0;
                        out.push(self.render(n, &f.selection, path));
                    }
                    Value::Array(out)
                }
                "edges" => {
                    let mut out = Vec::new();
                    for n in nodes {
                        let edge = Obj::Edge(Box::new(n.clone()), node_type);
                        out.push(self.render(&edge, &f.selection, path));
                    }
                    Value::Array(out)
                }
                "pageInfo" => {
                    let pi = Obj::PageInfo {
                        has_next: *has_next,
                        has_prev: *has_prev,
                        start: nodes.first().map(cursor_for),
                        end: nodes.last().map(cursor_for),
                    };
                    self.render(&pi, &f.selection, path)
                }
                _ => Value::Null,
            },
            Obj::Edge(n, _) => match f.name.as_str() {
                "cursor" => json!(cursor_for(n)),
                "node" => {
                    self.actual += 1.0;
                    self.render(n, &f.selection, path)
                }
                _ => Value::Null,
            },
            Obj::PageInfo {
                has_next,
                has_prev,
                start,
                end,
            } => match f.name.as_str() {
                "hasNextPage" => json!(has_next),
                "hasPreviousPage" => json!(has_prev),
                "startCursor" => json!(start),
                "endCursor" => json!(end),
                _ => Value::Null,
            },
            Obj::Payload(out) => match f.name.as_str() {
                "inventoryAdjustmentGroup" => match &out.group {
                    Some(g) => self.render(&Obj::Group(g.clone()), &f.selection, path),
                    None => Value::Null,
                },
                "userErrors" => {
                    let mut v = Vec::new();
                    for e in &out.errors {
                        v.push(self.render(
                            &Obj::UserError(e.clone(), out.adjust),
                            &f.selection,
                            path,
                        ));
                    }
                    Value::Array(v)
                }
                _ => Value::Null,
            },
            Obj::Group(g) => match f.name.as_str() {
                "id" => json!(gid("InventoryAdjustmentGroup", g.id)),
                "createdAt" => json!(g.created_at),
                "reason" => json!(g.reason),
                "referenceDocumentUri" => json!(g.reference),
                "changes" => {
                    let items = self.arg(f, "inventoryItemIds");
                    let locs = self.arg(f, "locationIds");
                    let names = self.arg(f, "quantityNames");
                    let keep = |filter: &Value, v: String| {
                        filter
                            .as_array()
                            .is_none_or(|a| a.iter().any(|x| x.as_str() == Some(v.as_str())))
                    };
                    let mut v = Vec::new();
                    for c in &g.changes {
                        if keep(&items, gid("InventoryItem", c.item))
                            && keep(&locs, gid("Location", c.loc))
                            && keep(&names, c.name.clone())
                        {
                            v.push(self.render(&Obj::Change(c.clone()), &f.selection, path));
                        }
                    }
                    Value::Array(v)
                }
                _ => Value::Null,
            },
            Obj::Change(c) => match f.name.as_str() {
                "name" => json!(c.name),
                "delta" => json!(c.delta),
                "quantityAfterChange" => json!(c.after),
                "ledgerDocumentUri" => Value::Null,
                "item" => self.sub(Some(Obj::Item(c.item)), f, path),
                "location" => self.sub(Some(Obj::Location(c.loc)), f, path),
                _ => Value::Null,
            },
            Obj::UserError(e, _) => match f.name.as_str() {
                "code" => json!(e.code),
                "field" => json!(e.field),
                "message" => json!(e.message),
                _ => Value::Null,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// inventorySetQuantities

/// Reasons accepted. Shopify's own list is UNCONFIRMED (§1.3); this is Shopline's mirror plus
/// the internal ones Shopify documents for states.
const REASONS: &[&str] = &[
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

fn ue(code: &'static str, field: &[&str], message: impl Into<String>) -> UserErr {
    UserErr {
        code,
        field: Some(field.iter().map(|s| s.to_string()).collect()),
        message: message.into(),
    }
}

fn qfield(i: usize, name: &str) -> Vec<String> {
    vec![
        "input".into(),
        "quantities".into(),
        i.to_string(),
        name.into(),
    ]
}

impl Shopify {
    /// Validate everything first, then apply all or nothing. Whether one failing quantity
    /// fails the whole mutation is UNCONFIRMED in the note; all-or-nothing is chosen here.
    fn set_quantities(
        &self,
        st: &mut State,
        input: &Map<String, Value>,
        version: u32,
    ) -> Result<(Outcome, Vec<(u64, u64)>), String> {
        let name = input.get("name").and_then(Value::as_str).unwrap_or("");
        let reason = input.get("reason").and_then(Value::as_str).unwrap_or("");
        let reference = input
            .get("referenceDocumentUri")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ignore = input
            .get("ignoreCompareQuantity")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let empty = Vec::new();
        let qs = input
            .get("quantities")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if version >= V2026_04 {
            // The shape of this runtime error is UNCONFIRMED (§1.3: "Omitting returns an error").
            if let Some(i) = qs
                .iter()
                .position(|q| q.get("changeFromQuantity").is_none())
            {
                return Err(format!(
                    "Variable input.quantities.{i}.changeFromQuantity is required as of 2026-04. Pass null to opt out of the compare-and-swap check."
                ));
            }
        }
        let mut errors = Vec::new();
        if name != "available" && name != "on_hand" {
            errors.push(ue(
                "INVALID_NAME",
                &["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
            ));
        }
        if !REASONS.contains(&reason) {
            errors.push(ue(
                "INVALID_REASON",
                &["input", "reason"],
                "The specified reason is invalid.",
            ));
        }
        if let Some(r) = &reference {
            let scheme_ok = r.split_once(':').is_some_and(|(s, rest)| {
                !s.is_empty()
                    && !rest.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            });
            if !scheme_ok {
                errors.push(ue(
                    "INVALID_REFERENCE_DOCUMENT",
                    &["input", "referenceDocumentUri"],
                    "The reference document URI must be a valid URI with a scheme.",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut plan: Vec<(u64, u64, i64)> = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            let item_s = q
                .get("inventoryItemId")
                .and_then(Value::as_str)
                .unwrap_or("");
            let loc_s = q.get("locationId").and_then(Value::as_str).unwrap_or("");
            let quantity = q.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            let item = parse_gid(item_s)
                .filter(|(k, _, _)| *k == "InventoryItem")
                .map(|(_, n, _)| n);
            let Some(item) = item.filter(|n| st.items.contains_key(n)) else {
                errors.push(UserErr {
                    code: "INVALID_INVENTORY_ITEM",
                    field: Some(qfield(i, "inventoryItemId")),
                    message: "The specified inventory item could not be found.".into(),
                });
                continue;
            };
            let loc = parse_gid(loc_s)
                .filter(|(k, _, _)| *k == "Location")
                .map(|(_, n, _)| n);
            let Some(loc) = loc.filter(|l| st.locations.iter().any(|(x, _)| x == l)) else {
                errors.push(UserErr {
                    code: "INVALID_LOCATION",
                    field: Some(qfield(i, "locationId")),
                    message: "The specified location could not be found.".into(),
                });
                continue;
            };
            if !seen.insert((item, loc)) {
                errors.push(UserErr {
                    code: "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    field: Some(vec!["input".into(), "quantities".into(), i.to_string()]),
                    message: "The combination of inventoryItemId and locationId must be unique."
                        .into(),
                });
                continue;
            }
            let sku = st.items[&item].sku.clone();
            if self.core.rejects_sku(&sku) {
                // From 2026-10 ITEM_NOT_STOCKED_AT_LOCATION no longer exists, so an injected
                // permanent failure uses NON_MUTABLE_INVENTORY_ITEM instead.
                let (code, message) = if version >= V2026_10 {
                    (
                        "NON_MUTABLE_INVENTORY_ITEM",
                        "The specified inventory item is not allowed to be adjusted via API.",
                    )
                } else {
                    (
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        "The specified inventory item is not stocked at the location.",
                    )
                };
                errors.push(UserErr {
                    code,
                    field: Some(qfield(i, "locationId")),
                    message: message.into(),
                });
                continue;
            }
            let level = st.items[&item].levels.get(&loc).map(|l| l.q);
            let current = match level {
                Some(q) => q,
                None if version >= V2026_10 => Quantities::default(),
                None => {
                    errors.push(UserErr {
                        code: "ITEM_NOT_STOCKED_AT_LOCATION",
                        field: Some(qfield(i, "locationId")),
                        message: "The specified inventory item is not stocked at the location."
                            .into(),
                    });
                    continue;
                }
            };
            if quantity > 1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_HIGH",
                    field: Some(qfield(i, "quantity")),
                    message: "The quantity can't be higher than 1,000,000,000.".into(),
                });
                continue;
            }
            if quantity < -1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_LOW",
                    field: Some(qfield(i, "quantity")),
                    message: "The quantity can't be lower than -1,000,000,000.".into(),
                });
                continue;
            }
            if name == "on_hand" && quantity < 0 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_NEGATIVE",
                    field: Some(qfield(i, "quantity")),
                    message: "The quantity can't be negative.".into(),
                });
                continue;
            }
            let stored = current.get(name).unwrap_or(0);
            let new_on_hand = if name == "available" {
                current.on_hand() + quantity - current.available
            } else {
                quantity
            };
            if new_on_hand > 1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_HIGH",
                    field: Some(qfield(i, "quantity")),
                    message: "The total quantity can't be higher than 1,000,000,000.".into(),
                });
                continue;
            }
            // Compare-and-swap by version (§1.3).
            let cfq = q.get("changeFromQuantity");
            if version >= V2026_04 || (version >= V2026_01 && cfq.is_some()) {
                if let Some(expected) = cfq.and_then(Value::as_i64) {
                    if expected != stored {
                        errors.push(UserErr {
                            code: "CHANGE_FROM_QUANTITY_STALE",
                            field: Some(qfield(i, "changeFromQuantity")),
                            message: "The changeFromQuantity value does not match persisted value."
                                .into(),
                        });
                        continue;
                    }
                }
            } else if !ignore {
                match q.get("compareQuantity").and_then(Value::as_i64) {
                    None => {
                        errors.push(UserErr {
                            code: "COMPARE_QUANTITY_REQUIRED",
                            field: Some(qfield(i, "compareQuantity")),
                            message: "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.".into(),
                        });
                        continue;
                    }
                    Some(c) if c != stored => {
                        errors.push(UserErr {
                            code: "COMPARE_QUANTITY_STALE",
                            field: Some(qfield(i, "compareQuantity")),
                            message: "The compareQuantity value does not match persisted value."
                                .into(),
                        });
                        continue;
                    }
                    Some(_) => {}
                }
            }
            plan.push((item, loc, quantity));
        }
        if !errors.is_empty() {
            return Ok((
                Outcome {
                    adjust: false,
                    group: None,
                    errors,
                },
                vec![],
            ));
        }
        let now = now_iso();
        let mut changes = Vec::new();
        let mut touched = Vec::new();
        for (item, loc, quantity) in plan {
            let it = st.items.get_mut(&item).expect("validated");
            let lv = it.levels.entry(loc).or_insert_with(|| Level {
                q: Quantities::default(),
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            let delta = if name == "available" {
                quantity - lv.q.available
            } else {
                quantity - lv.q.on_hand()
            };
            // Setting on_hand moves the difference through available (the only free bucket).
            lv.q.available += delta;
            lv.updated_at = now.clone();
            it.updated_at = now.clone();
            changes.push(Change {
                name: "available".into(),
                delta,
                after: lv.q.available,
                item,
                loc,
            });
            changes.push(Change {
                name: "on_hand".into(),
                delta,
                after: lv.q.on_hand(),
                item,
                loc,
            });
            touched.push((item, loc));
        }
        st.next_group += 1;
        let group = Group {
            id: st.next_group,
            created_at: now,
            reason: reason.to_string(),
            reference,
            changes,
        };
        Ok((
            Outcome {
                adjust: false,
                group: Some(group),
                errors: vec![],
            },
            touched,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Names `inventoryAdjustQuantities` accepts (UNCONFIRMED list; §1.2 names minus `committed`).
const ADJUSTABLE: &[&str] = &[
    "available",
    "damaged",
    "incoming",
    "on_hand",
    "quality_control",
    "reserved",
    "safety_stock",
];

impl Shopify {
    /// `inventoryAdjustQuantities` (§1.4): deltas, `ledgerDocumentUri` rules, optional CAS by
    /// `changeFromQuantity` (required from 2026-04). Its error codes are UNCONFIRMED in the note;
    /// the set family's codes are reused where they fit. All or nothing, like the set mutation.
    fn adjust_quantities(
        &self,
        st: &mut State,
        input: &Map<String, Value>,
        version: u32,
    ) -> Result<(Outcome, Vec<(u64, u64)>), String> {
        let name = input.get("name").and_then(Value::as_str).unwrap_or("");
        let reason = input.get("reason").and_then(Value::as_str).unwrap_or("");
        let reference = input
            .get("referenceDocumentUri")
            .and_then(Value::as_str)
            .map(str::to_string);
        let empty = Vec::new();
        let cs = input
            .get("changes")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if version >= V2026_04 {
            if let Some(i) = cs
                .iter()
                .position(|c| c.get("changeFromQuantity").is_none())
            {
                return Err(format!(
                    "Variable input.changes.{i}.changeFromQuantity is required as of 2026-04. Pass null to opt out of the compare-and-swap check."
                ));
            }
        }
        let cfield = |i: usize, n: &str| -> Vec<String> {
            vec!["input".into(), "changes".into(), i.to_string(), n.into()]
        };
        let mut errors = Vec::new();
        if !ADJUSTABLE.contains(&name) {
            errors.push(ue(
                "INVALID_QUANTITY_NAME",
                &["input", "name"],
                "The quantity name is not valid.",
            ));
        }
        if !REASONS.contains(&reason) {
            errors.push(ue(
                "INVALID_REASON",
                &["input", "reason"],
                "The specified reason is invalid.",
            ));
        }
        let mut plan: Vec<(u64, u64, i64)> = Vec::new();
        for (i, c) in cs.iter().enumerate() {
            let delta = c.get("delta").and_then(Value::as_i64).unwrap_or(0);
            let ledger = c.get("ledgerDocumentUri").and_then(Value::as_str);
            match (name == "available", ledger) {
                (true, Some(_)) => {
                    errors.push(UserErr {
                        code: "INVALID_AVAILABLE_DOCUMENT",
                        field: Some(cfield(i, "ledgerDocumentUri")),
                        message:
                            "A ledger document URI is not supported for the available quantity."
                                .into(),
                    });
                    continue;
                }
                (false, None) => {
                    errors.push(UserErr {
                        code: "INVALID_LEDGER_DOCUMENT",
                        field: Some(cfield(i, "ledgerDocumentUri")),
                        message: "A ledger document URI is required for this quantity name.".into(),
                    });
                    continue;
                }
                (false, Some(l)) if l.starts_with("gid://shopify/") => {
                    errors.push(UserErr {
                        code: "INTERNAL_LEDGER_DOCUMENT",
                        field: Some(cfield(i, "ledgerDocumentUri")),
                        message: "A Shopify GID is not accepted as a ledger document URI.".into(),
                    });
                    continue;
                }
                _ => {}
            }
            let item = c
                .get("inventoryItemId")
                .and_then(Value::as_str)
                .and_then(parse_gid)
                .filter(|(k, n, _)| *k == "InventoryItem" && st.items.contains_key(n))
                .map(|(_, n, _)| n);
            let Some(item) = item else {
                errors.push(UserErr {
                    code: "INVALID_INVENTORY_ITEM",
                    field: Some(cfield(i, "inventoryItemId")),
                    message: "The specified inventory item could not be found.".into(),
                });
                continue;
            };
            let loc = c
                .get("locationId")
                .and_then(Value::as_str)
                .and_then(parse_gid)
                .filter(|(k, n, _)| *k == "Location" && st.locations.iter().any(|(x, _)| x == n))
                .map(|(_, n, _)| n);
            let Some(loc) = loc else {
                errors.push(UserErr {
                    code: "INVALID_LOCATION",
                    field: Some(cfield(i, "locationId")),
                    message: "The specified location could not be found.".into(),
                });
                continue;
            };
            let sku = st.items[&item].sku.clone();
            let level = st.items[&item].levels.get(&loc).map(|l| l.q);
            let current = match level {
                Some(q) if !self.core.rejects_sku(&sku) => q,
                None if version >= V2026_10 && !self.core.rejects_sku(&sku) => {
                    Quantities::default()
                }
                _ => {
                    errors.push(UserErr {
                        code: "ITEM_NOT_STOCKED_AT_LOCATION",
                        field: Some(cfield(i, "locationId")),
                        message: "The specified inventory item is not stocked at the location."
                            .into(),
                    });
                    continue;
                }
            };
            let stored = current.get(name).unwrap_or(0);
            if let Some(expected) = c.get("changeFromQuantity").and_then(Value::as_i64) {
                if expected != stored {
                    errors.push(UserErr {
                        code: "CHANGE_FROM_QUANTITY_STALE",
                        field: Some(cfield(i, "changeFromQuantity")),
                        message: "The changeFromQuantity value does not match persisted value."
                            .into(),
                    });
                    continue;
                }
            }
            let after = stored + delta;
            if after > 1_000_000_000 || current.on_hand() + delta > 1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_HIGH",
                    field: Some(cfield(i, "delta")),
                    message: "The quantity can't be higher than 1,000,000,000.".into(),
                });
                continue;
            }
            if after < -1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_LOW",
                    field: Some(cfield(i, "delta")),
                    message: "The quantity can't be lower than -1,000,000,000.".into(),
                });
                continue;
            }
            plan.push((item, loc, delta));
        }
        if !errors.is_empty() {
            return Ok((
                Outcome {
                    adjust: true,
                    group: None,
                    errors,
                },
                vec![],
            ));
        }
        let now = now_iso();
        let mut changes = Vec::new();
        let mut touched = Vec::new();
        for (item, loc, delta) in plan {
            let it = st.items.get_mut(&item).expect("validated");
            let lv = it.levels.entry(loc).or_insert_with(|| Level {
                q: Quantities::default(),
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            let q = &mut lv.q;
            match name {
                "available" | "on_hand" => q.available += delta,
                "damaged" => q.damaged += delta,
                "incoming" => q.incoming += delta,
                "quality_control" => q.quality_control += delta,
                "reserved" => q.reserved += delta,
                _ => q.safety_stock += delta,
            }
            let q = lv.q;
            lv.updated_at = now.clone();
            it.updated_at = now.clone();
            let mut push = |n: &str, after: i64| {
                changes.push(Change {
                    name: n.into(),
                    delta,
                    after,
                    item,
                    loc,
                })
            };
            push(name, q.get(name).unwrap_or(0));
            if name == "on_hand" {
                push("available", q.available);
            } else if name != "incoming" {
                push("on_hand", q.on_hand());
            }
            touched.push((item, loc));
        }
        st.next_group += 1;
        let group = Group {
            id: st.next_group,
            created_at: now,
            reason: reason.to_string(),
            reference,
            changes,
        };
        Ok((
            Outcome {
                adjust: true,
                group: Some(group),
                errors: vec![],
            },
            touched,
        ))
    }
}

fn cost_ext(requested: f64, actual: Option<f64>, bucket: &Bucket) -> Value {
    json!({"cost": {
        "requestedQueryCost": requested as i64,
        "actualQueryCost": actual.map(|a| a as i64),
        "throttleStatus": bucket.status(),
    }})
}

fn respond(status: StatusCode, body: Value, version: &str) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(version) {
        r.headers_mut().insert("x-shopify-api-version", v);
    }
    r
}

/// A result whose `data` keeps the order the query asked for (GraphQL spec,
/// "Serialization Format": a response map is ordered by the selection set).
fn respond_in_query_order(
    data: Option<&Value>,
    errors: Option<Value>,
    extensions: Value,
    selection: &[Selection],
    doc: &Document,
    version: &str,
) -> Response {
    let mut body = String::from("{");
    if let Some(errors) = errors {
        body.push_str("\"errors\":");
        body.push_str(&errors.to_string());
        body.push(',');
    }
    if let Some(data) = data {
        body.push_str("\"data\":");
        body.push_str(&graphql::to_json_in_query_order(data, selection, doc));
        body.push(',');
    }
    body.push_str("\"extensions\":");
    body.push_str(&extensions.to_string());
    body.push('}');
    let mut r = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(version) {
        r.headers_mut().insert("x-shopify-api-version", v);
    }
    r
}

fn errors_only(errors: Vec<Value>, st: &State, version: &str) -> Response {
    respond(
        StatusCode::OK,
        json!({"errors": errors, "extensions": cost_ext(0.0, Some(0.0), &st.bucket)}),
        version,
    )
}

async fn graphql_handler(
    AxState(sim): AxState<Arc<Shopify>>,
    Path(version_s): Path<String>,
    req: Request,
) -> Response {
    let injected = sim.core.intercept().await;
    let accepted = if sim.config.api_version == "any" {
        parse_version(&version_s).is_some()
    } else {
        sim.config
            .api_version
            .split(',')
            .any(|v| v.trim() == version_s)
    };
    let Some(version) = parse_version(&version_s).filter(|_| accepted) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"errors": "Not Found"})),
        )
            .into_response();
    };
    if let Some(inj) = injected {
        return injected_response(&sim, inj, &version_s);
    }
    let token_ok = req
        .headers()
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| crate::common::ct_eq(t.as_bytes(), sim.config.access_token.as_bytes()));
    if !token_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})),
        )
            .into_response();
    }
    let body = match axum::body::to_bytes(req.into_body(), 8 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(json!({"errors": "Payload Too Large"})),
            )
                .into_response()
        }
    };
    sim.execute(&body, version, &version_s).await
}

fn injected_response(sim: &Shopify, inj: Injected, version: &str) -> Response {
    match inj {
        // The shape of an outage / 5xx body is UNCONFIRMED; Shopify's REST-style error object is used.
        Injected::Outage => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"errors": "Service Unavailable"})),
        )
            .into_response(),
        Injected::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"errors": "Internal Server Error"})),
        )
            .into_response(),
        Injected::Throttle { retry_after } => {
            let st = lock(&sim.state);
            let status = StatusCode::from_u16(sim.config.throttle_status).unwrap_or(StatusCode::OK);
            let mut r = respond(status, throttled_body(0.0, &st.bucket, true), version);
            if let Some(s) = retry_after {
                if let Ok(v) = HeaderValue::from_str(&retry_after_value(s)) {
                    r.headers_mut().insert("retry-after", v);
                }
            }
            r
        }
    }
}

fn throttled_body(requested: f64, bucket: &Bucket, storm: bool) -> Value {
    let mut ext = cost_ext(requested, None, bucket);
    if storm {
        ext["cost"]["throttleStatus"]["currentlyAvailable"] = json!(0);
    }
    json!({
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
        "extensions": ext,
    })
}

impl Shopify {
    async fn execute(&self, body: &[u8], version: u32, version_s: &str) -> Response {
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": {"query": "Required parameter missing or invalid"}}),
                    version_s,
                )
            }
        };
        let Some(query) = parsed.get("query").and_then(Value::as_str) else {
            return respond(
                StatusCode::BAD_REQUEST,
                json!({"errors": {"query": "Required parameter missing or invalid"}}),
                version_s,
            );
        };
        let raw_vars = match parsed.get("variables") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": {"variables": "Required parameter missing or invalid"}}),
                    version_s,
                )
            }
        };
        let doc = match graphql::parse(query) {
            Ok(d) => d,
            Err(e) => {
                let st = lock(&self.state);
                return errors_only(
                    vec![gql_error(e.message, Some(e.pos), &[], Value::Null)],
                    &st,
                    version_s,
                );
            }
        };
        let op_name = parsed.get("operationName").and_then(Value::as_str);
        let op = match (op_name, doc.operations.len()) {
            (Some(n), _) => doc.operations.iter().find(|o| o.name.as_deref() == Some(n)),
            (None, 1) => doc.operations.first(),
            (None, _) => {
                let st = lock(&self.state);
                return errors_only(
                    vec![gql_error(
                        "An operation name is required",
                        None,
                        &[],
                        Value::Null,
                    )],
                    &st,
                    version_s,
                );
            }
        };
        let Some(op) = op.cloned() else {
            let st = lock(&self.state);
            return errors_only(
                vec![gql_error(
                    format!("No operation named \"{}\"", op_name.unwrap_or("")),
                    None,
                    &[],
                    Value::Null,
                )],
                &st,
                version_s,
            );
        };
        let root = match op.kind {
            OpKind::Query => "QueryRoot",
            OpKind::Mutation => "Mutation",
            OpKind::Subscription => {
                let st = lock(&self.state);
                return errors_only(
                    vec![gql_error(
                        "Schema is not configured for subscriptions",
                        Some(op.pos),
                        &[],
                        Value::Null,
                    )],
                    &st,
                    version_s,
                );
            }
        };
        // Variables: declared types must exist, values must coerce (graphql-ruby's messages).
        let mut errors = Vec::new();
        let mut vars = Map::new();
        let mut decls = HashMap::new();
        for vd in &op.vars {
            decls.insert(vd.name.clone(), vd.ty.clone());
            if !is_input_type(&vd.ty) {
                errors.push(gql_error(
                    format!("{} isn't a defined input type (on ${})", vd.ty.trim_matches(|c| c == '[' || c == ']' || c == '!'), vd.name),
                    Some(op.pos),
                    &[],
                    json!({"code": "variableRequiresValidType", "typeName": vd.ty, "variableName": vd.name}),
                ));
                continue;
            }
            let given = raw_vars
                .get(&vd.name)
                .cloned()
                .or_else(|| vd.default.as_ref().map(|d| literal_to_json(d, &Map::new())));
            let Some(given) = given else {
                if vd.ty.ends_with('!') {
                    errors.push(gql_error(
                        format!("Variable ${} of type {} was provided invalid value", vd.name, vd.ty),
                        Some(op.pos),
                        &[],
                        json!({"value": null, "problems": [{"path": [], "explanation": "Expected value to not be null"}]}),
                    ));
                }
                continue;
            };
            let mut problems = Vec::new();
            let c = coerce(&given, &vd.ty, version, &mut vec![], &mut problems);
            if problems.is_empty() {
                vars.insert(vd.name.clone(), c);
            } else {
                let detail: Vec<String> = problems
                    .iter()
                    .map(|p| {
                        let path: Vec<String> = p
                            .path
                            .iter()
                            .map(|x| {
                                x.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x.to_string())
                            })
                            .collect();
                        if path.is_empty() {
                            p.explanation.clone()
                        } else {
                            format!("{} ({})", path.join("."), p.explanation)
                        }
                    })
                    .collect();
                errors.push(gql_error(
                    format!("Variable ${} of type {} was provided invalid value for {}", vd.name, vd.ty, detail.join(", ")),
                    Some(op.pos),
                    &[],
                    json!({"value": given, "problems": problems.iter().map(|p| json!({"path": p.path, "explanation": p.explanation})).collect::<Vec<_>>()}),
                ));
            }
        }
        let op_label = format!(
            "{} {}",
            if op.kind == OpKind::Mutation {
                "mutation"
            } else {
                "query"
            },
            op.name.clone().unwrap_or_default()
        )
        .trim()
        .to_string();
        for d in &op.directives {
            let kind = if op.kind == OpKind::Mutation {
                "mutations"
            } else {
                "queries"
            };
            errors.push(gql_error(
                format!("'@{}' can't be applied to {kind} (allowed: fields, fragment spreads, inline fragments)", d.name),
                Some(d.pos),
                &[],
                json!({"code": "directiveCannotBeApplied", "targetName": kind, "name": d.name}),
            ));
        }
        let mut check = Check {
            doc: &doc,
            vars: &decls,
            version,
            errors: vec![],
            depth: 0,
        };
        let requested = check.selection(root, &op.selection, &mut vec![op_label.clone()]);
        errors.extend(check.errors);
        // Strictness on connections: `first` or `last` is required and at most 250 (§1.1).
        validate_connections(&op.selection, &doc, &vars, root, &mut errors);
        if !errors.is_empty() {
            let st = lock(&self.state);
            return errors_only(errors, &st, version_s);
        }
        if requested > self.config.max_query_cost {
            let st = lock(&self.state);
            // Message and code as reported by clients; UNCONFIRMED against Shopify docs.
            return respond(
                StatusCode::OK,
                json!({
                    "errors": [{"message": format!("Query cost is {}, which exceeds the single query max cost limit ({}).", requested as i64, self.config.max_query_cost as i64),
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested as i64, "maxCost": self.config.max_query_cost as i64, "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": cost_ext(requested, None, &st.bucket),
                }),
                version_s,
            );
        }
        // Pay for the requested cost up front (§1.6).
        {
            let mut st = lock(&self.state);
            st.bucket.refill();
            if st.bucket.level < requested {
                Counters::add(&self.core.counters.rate_limit_violations, 1);
                let status =
                    StatusCode::from_u16(self.config.throttle_status).unwrap_or(StatusCode::OK);
                return respond(
                    status,
                    throttled_body(requested, &st.bucket, false),
                    version_s,
                );
            }
            st.bucket.level -= requested;
        }
        if op.kind == OpKind::Mutation {
            return self
                .run_mutation(&doc, &op, &vars, version, version_s, requested)
                .await;
        }
        let mut st = lock(&self.state);
        let (data, actual, errs) = {
            let mut ex = Exec {
                st: &st,
                vars: &vars,
                doc: &doc,
                actual: 0.0,
                errors: vec![],
            };
            let data = ex.render(&Obj::Query, &op.selection, &mut vec![]);
            (data, ex.actual.min(requested), ex.errors)
        };
        st.bucket.level = (st.bucket.level + (requested - actual)).min(st.bucket.max);
        let errors = (!errs.is_empty()).then_some(Value::Array(errs));
        let extensions = cost_ext(requested, Some(actual), &st.bucket);
        respond_in_query_order(
            Some(&data),
            errors,
            extensions,
            &op.selection,
            &doc,
            version_s,
        )
    }

    async fn run_mutation(
        &self,
        doc: &Document,
        op: &graphql::Operation,
        vars: &Map<String, Value>,
        version: u32,
        version_s: &str,
        requested: f64,
    ) -> Response {
        let mut fields = Vec::new();
        collect(doc, vars, "Mutation", &op.selection, &mut fields);
        let fields: Vec<Field> = fields.into_iter().cloned().collect();
        let mut data = Map::new();
        let mut top_errors = Vec::new();
        let mut actual: f64 = 0.0;
        for f in &fields {
            if f.name == "__typename" {
                data.insert(f.key().into(), json!("Mutation"));
                continue;
            }
            actual += 10.0;
            let adjust = f.name == "inventoryAdjustQuantities";
            let input_ty = if adjust {
                "InventoryAdjustQuantitiesInput!"
            } else {
                "InventorySetQuantitiesInput!"
            };
            let list_field = if adjust { "changes" } else { "quantities" };
            let input_v = f
                .arg("input")
                .map(|v| literal_to_json(v, vars))
                .unwrap_or(Value::Null);
            if let Some(lit) = f.arg("input").filter(|v| !contains_var(v)) {
                let mut problems = Vec::new();
                let _ = coerce(&input_v, input_ty, version, &mut vec![], &mut problems);
                if !problems.is_empty() {
                    top_errors.push(gql_error(
                        format!(
                            "Argument 'input' on Field '{}' has an invalid value ({}). Expected type '{input_ty}'.",
                            f.name,
                            literal_to_json(lit, vars)
                        ),
                        Some(f.pos),
                        &[f.key().to_string()],
                        json!({"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": "input"}),
                    ));
                    continue;
                }
            }
            let mut problems = Vec::new();
            let input = coerce(&input_v, input_ty, version, &mut vec![], &mut problems);
            let input = input.as_object().cloned().unwrap_or_default();
            let n_quantities = input
                .get(list_field)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if n_quantities > 250 {
                // §1.1: array inputs take at most 250 items; error text UNCONFIRMED.
                top_errors.push(gql_error(
                    format!("The input array size of {n_quantities} is greater than the maximum allowed of 250."),
                    Some(f.pos),
                    &[f.key().to_string(), "input".into(), list_field.into()],
                    json!({"code": "MAX_INPUT_SIZE_EXCEEDED"}),
                ));
                continue;
            }
            let key = f
                .directives
                .iter()
                .find(|d| d.name == "idempotent")
                .and_then(|d| d.args.iter().find(|(n, _)| n == "key"))
                .map(|(_, v)| literal_to_json(v, vars));
            let key = key.and_then(|k| k.as_str().map(str::to_string));
            if version >= V2026_04 && key.is_none() {
                // §1.3: "calling these mutations without an idempotency directive will result
                // in an error at runtime"; the message is UNCONFIRMED.
                top_errors.push(gql_error(
                    "The @idempotent directive is required for this mutation.",
                    Some(f.pos),
                    &[f.key().to_string()],
                    json!({"code": "BAD_REQUEST"}),
                ));
                continue;
            }
            let fingerprint = format!(
                "{}:{}",
                f.name,
                serde_json::to_string(&input).unwrap_or_default()
            );
            let outcome = match self
                .apply_with_key(key, &fingerprint, &input, version, adjust)
                .await
            {
                Ok(o) => o,
                Err(msg) => {
                    top_errors.push(gql_error(
                        msg,
                        Some(f.pos),
                        &[f.key().to_string()],
                        json!({"code": "BAD_REQUEST"}),
                    ));
                    continue;
                }
            };
            let st = lock(&self.state);
            let mut ex = Exec {
                st: &st,
                vars,
                doc,
                actual: 0.0,
                errors: vec![],
            };
            let v = ex.render(
                &Obj::Payload(outcome),
                &f.selection,
                &mut vec![f.key().to_string()],
            );
            data.insert(f.key().into(), v);
        }
        let mut st = lock(&self.state);
        let actual = actual.min(requested);
        st.bucket.level = (st.bucket.level + (requested - actual)).min(st.bucket.max);
        let extensions = cost_ext(requested, Some(actual), &st.bucket);
        let data = (!data.is_empty() || top_errors.is_empty()).then_some(Value::Object(data));
        let errors = (!top_errors.is_empty()).then_some(Value::Array(top_errors));
        respond_in_query_order(
            data.as_ref(),
            errors,
            extensions,
            &op.selection,
            doc,
            version_s,
        )
    }

    async fn apply_with_key(
        &self,
        key: Option<String>,
        fingerprint: &str,
        input: &Map<String, Value>,
        version: u32,
        adjust: bool,
    ) -> Result<Outcome, String> {
        if let Some(k) = &key {
            let mut st = lock(&self.state);
            match st.idem.get(k) {
                Some(Idem::Done(fp, out)) if fp == fingerprint => return Ok(out.clone()),
                Some(Idem::Done(..)) | Some(Idem::InProgress) => {
                    let in_progress = matches!(st.idem.get(k), Some(Idem::InProgress));
                    let (code, message) = if in_progress {
                        (
                            "IDEMPOTENCY_CONCURRENT_REQUEST",
                            "This request is currently in progress, please try again.",
                        )
                    } else {
                        (
                            "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            "The same idempotency key cannot be used with different operation parameters.",
                        )
                    };
                    return Ok(Outcome {
                        adjust,
                        group: None,
                        errors: vec![UserErr {
                            code,
                            field: None,
                            message: message.into(),
                        }],
                    });
                }
                None => {
                    st.idem.insert(k.clone(), Idem::InProgress);
                }
            }
        }
        if !self.config.mutation_processing_time.is_zero() {
            tokio::time::sleep(self.config.mutation_processing_time).await;
        }
        let mut st = lock(&self.state);
        let result = if adjust {
            self.adjust_quantities(&mut st, input, version)
        } else {
            self.set_quantities(&mut st, input, version)
        };
        match result {
            Err(msg) => {
                if let Some(k) = &key {
                    st.idem.remove(k);
                }
                Err(msg)
            }
            Ok((outcome, touched)) => {
                if let Some(k) = key {
                    st.idem
                        .insert(k, Idem::Done(fingerprint.to_string(), outcome.clone()));
                }
                Counters::add(&self.core.counters.updates_applied, touched.len() as u64);
                for (item, loc) in touched {
                    self.emit_level_update(&st, item, loc);
                }
                Ok(outcome)
            }
        }
    }
}

fn validate_connections(
    sels: &[Selection],
    doc: &Document,
    vars: &Map<String, Value>,
    ty: &str,
    errors: &mut Vec<Value>,
) {
    fn walk(
        sels: &[Selection],
        doc: &Document,
        vars: &Map<String, Value>,
        ty: &str,
        errors: &mut Vec<Value>,
        depth: usize,
    ) {
        if depth > 40 {
            return;
        }
        for s in sels {
            match s {
                Selection::Field(f) => {
                    let Some((kind, _)) = field_def(ty, &f.name) else {
                        continue;
                    };
                    if let Kind::Conn(..) = kind {
                        let first = f
                            .arg("first")
                            .map(|v| literal_to_json(v, vars))
                            .filter(|v| !v.is_null());
                        let last = f
                            .arg("last")
                            .map(|v| literal_to_json(v, vars))
                            .filter(|v| !v.is_null());
                        if first.is_none() && last.is_none() {
                            errors.push(gql_error(
                                format!(
                                    "you must provide one of first or last for the {} connection",
                                    f.name
                                ),
                                Some(f.pos),
                                &[f.key().to_string()],
                                Value::Null,
                            ));
                        }
                        for v in [first, last].into_iter().flatten() {
                            if v.as_i64().is_none_or(|n| !(0..=250).contains(&n)) {
                                errors.push(gql_error(
                                    format!("The argument `first` or `last` on {} must be between 0 and 250", f.name),
                                    Some(f.pos),
                                    &[f.key().to_string()],
                                    Value::Null,
                                ));
                            }
                        }
                    }
                    let target = match kind {
                        Kind::Obj(t) | Kind::List(t) | Kind::Conn(t, _) => t,
                        Kind::Scalar => continue,
                    };
                    walk(&f.selection, doc, vars, target, errors, depth + 1);
                }
                Selection::Spread { name, .. } => {
                    if let Some(fr) = doc.fragments.get(name) {
                        let t = if ty == "Node" {
                            fr.type_cond.as_str()
                        } else {
                            ty
                        };
                        walk(&fr.selection, doc, vars, t, errors, depth + 1);
                    }
                }
                Selection::Inline {
                    type_cond,
                    selection,
                    ..
                } => {
                    let t = type_cond.as_deref().unwrap_or(ty);
                    walk(selection, doc, vars, t, errors, depth + 1);
                }
            }
        }
    }
    walk(sels, doc, vars, ty, errors, 0);
}

// ---------------------------------------------------------------------------------------------
// Webhooks, orders

fn money(units: i64) -> String {
    format!("{}.00", units)
}

impl Shopify {
    fn emit(&self, st: &State, topic: &str, body: &Value) {
        if !self.config.webhook_topics.iter().any(|t| t == topic) {
            return;
        }
        let Some(url) = st.webhook_url.clone() else {
            return;
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let sig = hmac_sha256_base64(self.config.webhook_secret.as_bytes(), &bytes);
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Shopify-Topic".into(), topic.to_string()),
            ("X-Shopify-Hmac-Sha256".into(), sig),
            (
                "X-Shopify-Shop-Domain".into(),
                self.config.shop_domain.clone(),
            ),
            (
                "X-Shopify-API-Version".into(),
                self.config.webhook_api_version.clone(),
            ),
            ("X-Shopify-Webhook-Id".into(), self.core.uuid()),
            ("X-Shopify-Event-Id".into(), self.core.uuid()),
            (
                "X-Shopify-Triggered-At".into(),
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        ];
        let policy = RetryPolicy {
            delays: self.config.webhook_retry_delays.clone(),
            max_success_status: 299,
            timeout: self.config.webhook_timeout,
        };
        let done: Option<crate::common::DoneHook> = if self.config.delete_subscription_after_retries
        {
            let state = Arc::clone(&self.state);
            let failed_url = url.clone();
            Some(Box::new(move |ok: bool| {
                if !ok {
                    let mut st = lock(&state);
                    if st.webhook_url.as_deref() == Some(failed_url.as_str()) {
                        st.webhook_url = None;
                    }
                }
            }))
        } else {
            None
        };
        self.core.send_webhook(
            Delivery {
                url,
                headers,
                body: bytes,
            },
            policy,
            done,
        );
    }

    fn emit_level_update(&self, st: &State, item: u64, loc: u64) {
        let Some(lv) = st.items.get(&item).and_then(|i| i.levels.get(&loc)) else {
            return;
        };
        let body = json!({
            "inventory_item_id": item,
            "location_id": loc,
            "available": lv.q.available,
            "updated_at": lv.updated_at,
            "admin_graphql_api_id": level_gid(item, loc),
        });
        self.emit(st, "inventory_levels/update", &body);
    }

    fn order_json(&self, o: &Order) -> Value {
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|l| {
                let fq = if o.cancelled_at.is_some() || o.refunded { 0 } else { l.quantity };
                json!({
                    "id": l.id,
                    "admin_graphql_api_id": gid("LineItem", l.id),
                    "variant_id": l.variant_id,
                    "product_id": l.product_id,
                    "sku": l.sku,
                    "quantity": l.quantity,
                    "fulfillable_quantity": fq,
                    "fulfillment_status": null,
                    "fulfillment_service": "manual",
                    "variant_inventory_management": "shopify",
                    "product_exists": true,
                    "title": format!("Product {}", l.sku),
                    "variant_title": "",
                    "name": format!("Product {}", l.sku),
                    "price": money(10),
                    "price_set": {"shop_money": {"amount": money(10), "currency_code": "EUR"}, "presentment_money": {"amount": money(10), "currency_code": "EUR"}},
                    "total_discount": "0.00",
                    "discount_allocations": [],
                    "tax_lines": [],
                    "properties": [],
                    "requires_shipping": true,
                    "gift_card": false,
                    "grams": 0,
                })
            })
            .collect();
        let total: i64 = o.lines.iter().map(|l| l.quantity * 10).sum();
        json!({
            "id": o.id,
            "admin_graphql_api_id": gid("Order", o.id),
            "name": format!("#{}", o.number),
            "order_number": o.number,
            "number": o.number - 1000,
            "email": "customer@example.com",
            "created_at": o.created_at,
            "updated_at": now_iso(),
            "processed_at": o.created_at,
            "cancelled_at": o.cancelled_at,
            "cancel_reason": o.cancelled_at.as_ref().map(|_| "customer"),
            "financial_status": if o.cancelled_at.is_some() { "voided" } else if o.refunded { "refunded" } else { "paid" },
            "fulfillment_status": null,
            "currency": "EUR",
            "total_price": money(total),
            "subtotal_price": money(total),
            "total_tax": "0.00",
            "location_id": o.location_id,
            "test": false,
            "line_items": lines,
        })
    }
}

impl SimBackend for Shopify {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let st = lock(&self.state);
        st.items.values().map(|i| st.listing(i)).collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        let loc = st.primary();
        let now = now_iso();
        let mut out = Vec::new();
        for n in items {
            let id = st.next_item;
            st.next_item += 1;
            let variant_id = st.next_variant;
            st.next_variant += 1;
            let product_id = st.next_product;
            st.next_product += 1;
            let mut levels = BTreeMap::new();
            levels.insert(
                loc,
                Level {
                    q: Quantities {
                        available: n.quantity,
                        ..Default::default()
                    },
                    created_at: now.clone(),
                    updated_at: now.clone(),
                },
            );
            let item = Item {
                id,
                sku: n.sku.clone(),
                variant_id,
                product_id,
                created_at: now.clone(),
                updated_at: now.clone(),
                levels,
            };
            out.push(st.listing(&item));
            st.by_sku.insert(n.sku.clone(), id);
            st.items.insert(id, item);
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        let loc = st.primary();
        let mut want: BTreeMap<u64, i64> = BTreeMap::new();
        for (sku, qty) in lines {
            let id = *st
                .by_sku
                .get(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            *want.entry(id).or_default() += qty;
        }
        for (id, qty) in &want {
            let avail = st.items[id]
                .levels
                .get(&loc)
                .map(|l| l.q.available)
                .unwrap_or(0);
            if avail < *qty {
                return Err(SimError::NotAvailable);
            }
        }
        let now = now_iso();
        let mut order_lines = Vec::new();
        for (sku, qty) in lines {
            let id = st.by_sku[sku];
            let line_id = st.next_line;
            st.next_line += 1;
            let it = st.items.get_mut(&id).expect("checked");
            let lv = it.levels.get_mut(&loc).expect("checked");
            // An order moves units from available to committed (§1.2).
            lv.q.available -= qty;
            lv.q.committed += qty;
            lv.updated_at = now.clone();
            order_lines.push(LineItem {
                id: line_id,
                item_id: id,
                variant_id: it.variant_id,
                product_id: it.product_id,
                sku: sku.clone(),
                quantity: *qty,
            });
        }
        let id = st.next_order;
        st.next_order += 1;
        let number = st.order_number;
        st.order_number += 1;
        let order = Order {
            id,
            number,
            created_at: now,
            cancelled_at: None,
            refunded: false,
            lines: order_lines,
            location_id: loc,
        };
        let body = self.order_json(&order);
        st.orders.insert(id, order.clone());
        self.emit(&st, "orders/create", &body);
        for l in &order.lines {
            self.emit_level_update(&st, l.item_id, loc);
        }
        Ok(
            json!({"order_id": id.to_string(), "admin_graphql_api_id": gid("Order", id), "name": format!("#{number}"), "line_items": body["line_items"]}),
        )
    }

    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let (id, order) = open_order(&st, order_id)?;
        let now = now_iso();
        for l in &order.lines {
            if let Some(lv) = st
                .items
                .get_mut(&l.item_id)
                .and_then(|i| i.levels.get_mut(&order.location_id))
            {
                lv.q.committed -= l.quantity;
                lv.q.available += l.quantity;
                lv.updated_at = now.clone();
            }
        }
        let o = st.orders.get_mut(&id).expect("exists");
        o.cancelled_at = Some(now);
        let o = o.clone();
        let body = self.order_json(&o);
        self.emit(&st, "orders/cancelled", &body);
        for l in &o.lines {
            self.emit_level_update(&st, l.item_id, o.location_id);
        }
        Ok(())
    }

    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let (id, order) = open_order(&st, order_id)?;
        let now = now_iso();
        for l in &order.lines {
            if let Some(lv) = st
                .items
                .get_mut(&l.item_id)
                .and_then(|i| i.levels.get_mut(&order.location_id))
            {
                // UNCONFIRMED (§3 item 7): a restocking refund of unfulfilled units returns them
                // to available; without restock they leave the shop.
                lv.q.committed -= l.quantity;
                if restock {
                    lv.q.available += l.quantity;
                }
                lv.updated_at = now.clone();
            }
        }
        let refund_id = st.next_refund;
        st.next_refund += 1;
        let o = st.orders.get_mut(&id).expect("exists");
        o.refunded = true;
        let o = o.clone();
        let order_body = self.order_json(&o);
        let rli: Vec<Value> = o
            .lines
            .iter()
            .zip(
                order_body["line_items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
            .enumerate()
            .map(|(i, (l, lj))| {
                json!({
                    "id": refund_id * 100 + i as u64,
                    "quantity": l.quantity,
                    "line_item_id": l.id,
                    "location_id": if restock { json!(o.location_id) } else { Value::Null },
                    "restock_type": if restock { "return" } else { "no_restock" },
                    "subtotal": (l.quantity * 10) as f64,
                    "total_tax": 0.0,
                    "line_item": lj,
                })
            })
            .collect();
        let body = json!({
            "id": refund_id,
            "order_id": o.id,
            "created_at": now,
            "processed_at": now,
            "note": null,
            "restock": restock,
            "refund_line_items": rli,
            "transactions": [],
            "order_adjustments": [],
            "duties": [],
            "return": null,
            "admin_graphql_api_id": gid("Refund", refund_id),
        });
        self.emit(&st, "refunds/create", &body);
        for l in &o.lines {
            self.emit_level_update(&st, l.item_id, o.location_id);
        }
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        let loc = st.primary();
        let id = *st
            .by_sku
            .get(sku)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let now = now_iso();
        let item = st
            .items
            .get_mut(&id)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let level = item.levels.entry(loc).or_insert_with(|| Level {
            q: Quantities::default(),
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        // The admin edits "available" (on hand is derived from it).
        level.q.available = quantity;
        level.updated_at = now;
        let item = item.clone();
        Ok(st.listing(&item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2026-01"), Some(202601));
        assert_eq!(parse_version("2026-02"), None);
        assert_eq!(parse_version("latest"), None);
        assert!(parse_version("unstable").unwrap() > V2026_10);
    }

    #[test]
    fn gids() {
        assert_eq!(
            parse_gid("gid://shopify/InventoryItem/30322695"),
            Some(("InventoryItem", 30322695, None))
        );
        assert_eq!(
            parse_level_gid("gid://shopify/InventoryLevel/655441491?inventory_item_id=808950810"),
            Some((808950810, 655441491))
        );
        assert_eq!(parse_gid("gid://other/InventoryItem/1"), None);
    }

    #[test]
    fn on_hand_identity() {
        let q = Quantities {
            available: 5,
            committed: 2,
            reserved: 1,
            damaged: 1,
            quality_control: 1,
            safety_stock: 1,
            incoming: 9,
        };
        assert_eq!(q.on_hand(), 11);
    }
}
