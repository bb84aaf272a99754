//! Shopify connector against an in-memory channel on paused time.
//!
//! Every request the connector sends goes through [`Fake`], which checks the
//! GraphQL document and its variables against the official Admin schema
//! (`specs/shopify/admin_schema.graphql`, API 2025-01) before
//! answering, so each test below also validates what it makes the connector
//! send.

use apollo_compiler::executable::ExecutableDocument;
use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;
use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use stockd_channels::shopify::{graphql_documents, Config, Shopify};
use stockd_channels::{
    Availability, ChannelError, ChannelLevel, Connector, ErrorClass, External, HttpRequest,
    HttpResponse, ItemOutcome, LevelQuery, OrderChange, OrderChangeKind, OrderLineRef, PushItem,
    Transport, WebhookAction, WebhookError,
};
use tokio::time::Instant;

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/shopify/admin_schema.graphql"
);

// ---------------------------------------------------------------------------
// Schema validation

/// What 2026-01 adds over the 2025-01 schema for the documents sent (§1.3).
const SCHEMA_2026_01_EXTENSION: &str = "
directive @idempotent(key: String) on FIELD
extend input InventoryQuantityInput { changeFromQuantity: Int }
";

struct Schemas {
    v2025_01: Valid<Schema>,
    v2026_01: Valid<Schema>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let sdl = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_else(|e| {
            panic!("the Shopify Admin schema must be present at {SCHEMA_PATH}: {e}")
        });
        // Shopify's dump redefines built-in scalars (`scalar ID`, …), which
        // the GraphQL spec says to omit; accept those and nothing else.
        let build = |extension: Option<&str>| {
            let mut builder = Schema::builder()
                .ignore_builtin_redefinitions()
                .parse(sdl.clone(), "admin_schema.graphql");
            if let Some(extension) = extension {
                builder = builder.parse(extension, "2026-01.graphql");
            }
            let schema = builder
                .build()
                .unwrap_or_else(|e| panic!("admin schema does not build: {e}"));
            schema
                .validate()
                .unwrap_or_else(|e| panic!("admin schema does not validate: {e}"))
        };
        let base = build(None);
        let extended = build(Some(SCHEMA_2026_01_EXTENSION));
        Schemas {
            v2025_01: base,
            v2026_01: extended,
        }
    })
}

/// Validates one document and, when given, its variables.
fn validate(schema: &Valid<Schema>, query: &str, variables: Option<&Value>) -> Result<(), String> {
    let doc = ExecutableDocument::parse_and_validate(schema, query, "request.graphql")
        .map_err(|e| e.to_string())?;
    if let Some(variables) = variables {
        let operation = doc.operations.get(None).map_err(|e| format!("{e:?}"))?;
        let map: apollo_compiler::response::JsonMap =
            serde_json::from_value(variables.clone()).map_err(|e| e.to_string())?;
        apollo_compiler::request::coerce_variable_values(schema, operation, &map)
            .map_err(|e| format!("variables: {e:?}"))?;
    }
    Ok(())
}

fn schema_for_url(url: &str) -> &'static Valid<Schema> {
    if url.contains("/2026-") || url.contains("/unstable/") {
        &schemas().v2026_01
    } else {
        &schemas().v2025_01
    }
}

// ---------------------------------------------------------------------------
// The fake channel

#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    url: String,
    headers: http::HeaderMap,
    body: Value,
}

impl Sent {
    fn query(&self) -> &str {
        self.body["query"].as_str().unwrap_or_default()
    }
    fn variables(&self) -> &Value {
        &self.body["variables"]
    }
    fn is_set(&self) -> bool {
        self.query().contains("inventorySetQuantities")
    }
    fn quantities(&self) -> Vec<Value> {
        self.variables()["input"]["quantities"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    fn idempotency_key(&self) -> Option<String> {
        let q = self.query();
        let start = q.find("@idempotent(key: \"")? + "@idempotent(key: \"".len();
        let end = q[start..].find('"')? + start;
        Some(q[start..end].to_string())
    }
}

type Handler = Box<dyn FnMut(&Sent) -> Result<HttpResponse, ChannelError> + Send>;

struct Fake {
    sent: Mutex<Vec<Sent>>,
    handler: Mutex<Handler>,
}

impl Fake {
    fn new(
        handler: impl FnMut(&Sent) -> Result<HttpResponse, ChannelError> + Send + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            sent: Mutex::new(Vec::new()),
            handler: Mutex::new(Box::new(handler)),
        })
    }
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Transport for Fake {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let body: Value = serde_json::from_slice(&request.body).expect("the connector sends JSON");
        let sent = Sent {
            at: Instant::now(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body,
        };
        // Every document that leaves is checked against the official schema.
        if let Err(e) = validate(
            schema_for_url(&sent.url),
            sent.query(),
            Some(sent.variables()),
        ) {
            panic!(
                "invalid GraphQL sent to {}:\n{e}\n{}",
                sent.url,
                sent.query()
            );
        }
        self.sent.lock().expect("lock").push(sent.clone());
        let mut handler = self.handler.lock().expect("lock");
        (handler)(&sent)
    }
}

fn response(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: http::HeaderMap::new(),
        body: serde_json::to_vec(&body).expect("json"),
    }
}

fn cost(requested: f64, actual: Option<f64>, available: f64) -> Value {
    json!({"cost": {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": available, "restoreRate": 50.0}
    }})
}

fn ok(data: Value) -> HttpResponse {
    response(
        200,
        json!({"data": data, "extensions": cost(10.0, Some(10.0), 1000.0)}),
    )
}

/// A small faithful shop: per-(item, location) `available` counts with the
/// version's compare-and-set rules (§1.3), all-or-nothing on user errors.
#[derive(Default)]
struct Shop {
    levels: HashMap<(String, String), i64>,
    change_from: bool,
}

impl Shop {
    fn handle(&mut self, sent: &Sent) -> Result<HttpResponse, ChannelError> {
        if sent.is_set() {
            Ok(ok(self.set(&sent.variables()["input"])))
        } else {
            Ok(ok(self.nodes(sent.variables())))
        }
    }

    fn set(&mut self, input: &Value) -> Value {
        let quantities = input["quantities"].as_array().cloned().unwrap_or_default();
        let mut errors = Vec::new();
        for (i, q) in quantities.iter().enumerate() {
            let key = (
                q["inventoryItemId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                q["locationId"].as_str().unwrap_or_default().to_string(),
            );
            let field = |name: &str| json!(["input", "quantities", i.to_string(), name]);
            let Some(&current) = self.levels.get(&key) else {
                errors.push(
                    json!({"code": "ITEM_NOT_STOCKED_AT_LOCATION", "field": field("locationId"),
                    "message": "The specified inventory item is not stocked at the location."}),
                );
                continue;
            };
            let obj = q.as_object().cloned().unwrap_or_default();
            if self.change_from {
                match obj.get("changeFromQuantity") {
                    None => errors.push(json!({"code": "INVALID", "field": field("changeFromQuantity"), "message": "required"})),
                    Some(Value::Null) => {}
                    Some(v) if v.as_i64() == Some(current) => {}
                    Some(_) => errors.push(json!({"code": "CHANGE_FROM_QUANTITY_STALE", "field": field("changeFromQuantity"),
                        "message": "The changeFromQuantity value does not match persisted value."})),
                }
            } else {
                match obj.get("compareQuantity").and_then(Value::as_i64) {
                    None => errors.push(json!({"code": "COMPARE_QUANTITY_REQUIRED", "field": field("compareQuantity"), "message": "required"})),
                    Some(c) if c == current => {}
                    Some(_) => errors.push(json!({"code": "COMPARE_QUANTITY_STALE", "field": field("compareQuantity"),
                        "message": "The compareQuantity value does not match persisted value."})),
                }
            }
        }
        if !errors.is_empty() {
            return json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": errors}});
        }
        let mut changes = Vec::new();
        for q in &quantities {
            let item = q["inventoryItemId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let location = q["locationId"].as_str().unwrap_or_default().to_string();
            let new = q["quantity"].as_i64().unwrap_or_default();
            let old = self
                .levels
                .insert((item.clone(), location.clone()), new)
                .unwrap_or(0);
            changes.push(
                json!({"name": "available", "delta": new - old, "quantityAfterChange": new,
                "item": {"id": item}, "location": {"id": location}}),
            );
        }
        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {
            "reason": input["reason"], "referenceDocumentUri": input["referenceDocumentUri"], "changes": changes},
            "userErrors": []}})
    }

    fn nodes(&self, variables: &Value) -> Value {
        let location = variables["locationId"].as_str().unwrap_or_default();
        let nodes: Vec<Value> = variables["ids"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|id| {
                let id = id.as_str().unwrap_or_default();
                let known = self.levels.keys().any(|(item, _)| item == id);
                if !known {
                    return Value::Null;
                }
                match self.levels.get(&(id.to_string(), location.to_string())) {
                    Some(q) => json!({"id": id, "inventoryLevel": {"quantities": [{"name": "available", "quantity": q}]}}),
                    None => json!({"id": id, "inventoryLevel": null}),
                }
            })
            .collect();
        json!({ "nodes": nodes })
    }
}

const LOCATION: &str = "gid://shopify/Location/1";

fn item_gid(n: u64) -> String {
    format!("gid://shopify/InventoryItem/{n}")
}

fn external(n: u64) -> External {
    let mut e = External::new();
    e.insert("inventory_item_id".into(), json!(item_gid(n)));
    e.insert("location_id".into(), json!(LOCATION));
    e.insert(
        "variant_id".into(),
        json!(format!("gid://shopify/ProductVariant/{}", n + 1000)),
    );
    e
}

fn item(n: u64, quantity: i64, believed: Option<i64>) -> PushItem {
    PushItem {
        sku: format!("SKU-{n}"),
        external: external(n),
        quantity,
        availability: if quantity > 0 {
            Availability::InStock
        } else {
            Availability::OutOfStock
        },
        eta: None,
        believed,
        idempotency_key: format!("listing-{n}-gen-1"),
        reference: "stockd://ledger/42".into(),
    }
}

fn shop_with(levels: &[(u64, i64)], change_from: bool) -> Arc<Mutex<Shop>> {
    let mut shop = Shop {
        change_from,
        ..Shop::default()
    };
    for &(n, q) in levels {
        shop.levels.insert((item_gid(n), LOCATION.to_string()), q);
    }
    Arc::new(Mutex::new(shop))
}

fn serve(shop: &Arc<Mutex<Shop>>) -> Arc<Fake> {
    let shop = shop.clone();
    Fake::new(move |sent| shop.lock().expect("lock").handle(sent))
}

fn connector(version: &str, fake: &Arc<Fake>) -> Shopify {
    let config = Config {
        shop_url: "http://127.0.0.1:9".into(),
        api_version: version.into(),
        access_token: "shpat_test".into(),
        webhook_secret: "shpss_test_secret".into(),
        ..Config::default()
    };
    Shopify::new(config, fake.clone())
}

fn level(shop: &Arc<Mutex<Shop>>, n: u64) -> Option<i64> {
    shop.lock()
        .expect("lock")
        .levels
        .get(&(item_gid(n), LOCATION.to_string()))
        .copied()
}

fn failed(outcome: &ItemOutcome) -> &ChannelError {
    match outcome {
        ItemOutcome::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Schema

#[test]
fn every_document_validates_against_the_admin_schema() {
    let s = schemas();
    let documents = graphql_documents();
    assert!(documents.len() >= 3, "level query and both set flavours");
    let mut flavours = (false, false);
    for doc in &documents {
        if doc.contains("@idempotent") {
            flavours.1 = true;
            validate(&s.v2026_01, doc, None).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            // The 2025-01 schema has no @idempotent: the check is not vacuous.
            assert!(validate(&s.v2025_01, doc, None).is_err());
        } else {
            if doc.contains("inventorySetQuantities") {
                flavours.0 = true;
            }
            validate(&s.v2025_01, doc, None).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            validate(&s.v2026_01, doc, None).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        }
    }
    assert_eq!(flavours, (true, true));

    // A misspelt argument and field are caught.
    let bad = documents[0].replace("locationId: $locationId", "locationID: $locationId");
    assert!(validate(&s.v2025_01, &bad, None).is_err());
    let bad = documents[1].replace("quantityAfterChange", "quantityAfter");
    assert!(validate(&s.v2025_01, &bad, None).is_err());
    // Variables are checked too: changeFromQuantity does not exist in 2025-01.
    let set = documents
        .iter()
        .find(|d| d.contains("inventorySetQuantities") && !d.contains("@idempotent"))
        .expect("set document");
    let vars = |cas: &str| {
        json!({"input": {"name": "available", "reason": "correction", "referenceDocumentUri": "stockd://ledger/1",
        "quantities": [{"inventoryItemId": item_gid(1), "locationId": LOCATION, "quantity": 1, cas: 0}]}})
    };
    validate(&s.v2025_01, set, Some(&vars("compareQuantity"))).expect("2025-01 variables");
    assert!(validate(&s.v2025_01, set, Some(&vars("changeFromQuantity"))).is_err());
    validate(&s.v2026_01, set, Some(&vars("changeFromQuantity"))).expect("2026-01 variables");
}

#[test]
fn bulk_documents_validate_against_the_admin_schema() {
    let s = schemas();
    let documents = stockd_channels::shopify::bulk_documents();
    assert_eq!(documents.len(), 4, "run, poll, current, bulk query");
    for doc in &documents {
        validate(&s.v2025_01, doc, None).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        validate(&s.v2026_01, doc, None).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    }
    validate(
        &s.v2025_01,
        &documents[0],
        Some(&json!({"query": documents[3]})),
    )
    .expect("run variables");
    validate(
        &s.v2025_01,
        &documents[1],
        Some(&json!({"id": "gid://shopify/BulkOperation/1"})),
    )
    .expect("poll variables");
    // The check is not vacuous: a misspelt field is caught.
    let bad = documents[3].replace("inventoryLevels", "inventoryLevelz");
    assert!(validate(&s.v2025_01, &bad, None).is_err());
}

// ---------------------------------------------------------------------------
// Push

#[tokio::test(start_paused = true)]
async fn push_sends_headers_endpoint_and_compare_quantity_for_2025_01() {
    let shop = shop_with(&[(1, 5), (2, 0)], false);
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    assert_eq!(shopify.kind(), "shopify");
    assert_eq!(shopify.max_batch(), 250);

    let out = shopify
        .push(&[item(1, 12, Some(5)), item(2, 3, Some(0))])
        .await
        .expect("push");
    assert_eq!(
        out,
        vec![
            ItemOutcome::Applied { quantity: 12 },
            ItemOutcome::Applied { quantity: 3 }
        ]
    );
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert_eq!(s.url, "http://127.0.0.1:9/admin/api/2025-01/graphql.json");
    assert_eq!(s.headers["x-shopify-access-token"], "shpat_test");
    assert_eq!(s.headers["content-type"], "application/json");
    assert!(s.idempotency_key().is_none());
    let input = &s.variables()["input"];
    assert_eq!(input["name"], "available");
    assert_eq!(input["reason"], "correction");
    assert_eq!(input["referenceDocumentUri"], "stockd://ledger/42");
    assert_eq!(
        s.quantities(),
        vec![
            json!({"inventoryItemId": item_gid(1), "locationId": LOCATION, "quantity": 12, "compareQuantity": 5}),
            json!({"inventoryItemId": item_gid(2), "locationId": LOCATION, "quantity": 3, "compareQuantity": 0}),
        ]
    );
    assert_eq!(level(&shop, 1), Some(12));
}

#[tokio::test(start_paused = true)]
async fn unknown_belief_is_read_first_before_2026_01() {
    let shop = shop_with(&[(1, 7)], false);
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    let out = shopify.push(&[item(1, 9, None)]).await.expect("push");
    assert_eq!(out, vec![ItemOutcome::Applied { quantity: 9 }]);
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert!(!sent[0].is_set(), "a level read comes first");
    assert_eq!(sent[0].variables()["ids"], json!([item_gid(1)]));
    assert_eq!(sent[1].quantities()[0]["compareQuantity"], 7);
}

#[tokio::test(start_paused = true)]
async fn change_from_quantity_and_stable_idempotency_key_from_2026_01() {
    let shop = shop_with(&[(1, 5), (2, 4)], true);
    let inner = shop.clone();
    let mut calls = 0;
    // The first attempt never gets an answer.
    let fake = Fake::new(move |sent| {
        calls += 1;
        if calls == 1 {
            return Err(ChannelError::new(
                ErrorClass::Retryable,
                "timeout",
                "timed out",
            ));
        }
        inner.lock().expect("lock").handle(sent)
    });
    let shopify = connector("2026-01", &fake);
    let batch = [item(1, 8, Some(5)), item(2, 6, None)];

    let err = shopify.push(&batch).await.expect_err("no answer");
    assert_eq!(err.class, ErrorClass::Retryable);
    let out = shopify.push(&batch).await.expect("retry");
    assert_eq!(
        out,
        vec![
            ItemOutcome::Applied { quantity: 8 },
            ItemOutcome::Applied { quantity: 6 }
        ]
    );

    let sent = fake.sent();
    assert_eq!(sent.len(), 2, "no level read: explicit null opts out");
    let key = sent[0].idempotency_key().expect("@idempotent");
    assert_eq!(sent[1].idempotency_key(), Some(key.clone()));
    assert_eq!(key.len(), 36, "UUID-shaped: {key}");
    let quantities = sent[1].quantities();
    assert_eq!(quantities[0]["changeFromQuantity"], 5);
    assert!(quantities[0].get("compareQuantity").is_none());
    // Unknown belief: an explicit null, which 2026-01 reads as "no check".
    assert_eq!(
        quantities[1]
            .as_object()
            .and_then(|q| q.get("changeFromQuantity")),
        Some(&Value::Null)
    );
    assert!(sent[1].variables()["input"]
        .get("ignoreCompareQuantity")
        .is_none());

    // Another batch gets another key.
    shopify
        .push(&[item(1, 2, Some(8))])
        .await
        .expect("third push");
    let third = fake.sent().pop().expect("sent");
    assert_ne!(third.idempotency_key(), Some(key));
}

#[tokio::test(start_paused = true)]
async fn batches_of_more_than_250_are_split() {
    let levels: Vec<(u64, i64)> = (1..=300).map(|n| (n, 1)).collect();
    let shop = shop_with(&levels, false);
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    let items: Vec<PushItem> = (1..=300).map(|n| item(n, n as i64 + 10, Some(1))).collect();
    let out = shopify.push(&items).await.expect("push");
    assert_eq!(out.len(), 300);
    for (n, outcome) in (1..=300).zip(&out) {
        assert_eq!(
            outcome,
            &ItemOutcome::Applied {
                quantity: n as i64 + 10
            }
        );
    }
    let sizes: Vec<usize> = fake.sent().iter().map(|s| s.quantities().len()).collect();
    assert_eq!(sizes, vec![250, 50]);
    assert_eq!(level(&shop, 300), Some(310));
}

async fn stale_item_is_reported_and_the_rest_applied(version: &str, change_from: bool) {
    // stockd believes 5 everywhere; the channel sold 2 of item 2 meanwhile.
    let shop = shop_with(&[(1, 5), (2, 3), (3, 5)], change_from);
    let fake = serve(&shop);
    let shopify = connector(version, &fake);
    let out = shopify
        .push(&[
            item(1, 10, Some(5)),
            item(2, 10, Some(5)),
            item(3, 10, Some(5)),
        ])
        .await
        .expect("push");
    assert_eq!(out[0], ItemOutcome::Applied { quantity: 10 });
    assert_eq!(out[2], ItemOutcome::Applied { quantity: 10 });
    let e = failed(&out[1]);
    assert_eq!(e.class, ErrorClass::Stale);
    assert_eq!(e.current, Some(3));
    assert!(e.code.ends_with("_STALE"), "{}", e.code);
    assert_eq!(e.status, Some(200));
    assert!(e.body.as_deref().unwrap_or_default().contains("STALE"));
    assert_eq!(
        (level(&shop, 1), level(&shop, 2), level(&shop, 3)),
        (Some(10), Some(3), Some(10))
    );

    let sent = fake.sent();
    assert_eq!(sent.len(), 3, "set, read of the stale item, resend");
    assert_eq!(sent[1].variables()["ids"], json!([item_gid(2)]));
    let resent: Vec<Value> = sent[2]
        .quantities()
        .iter()
        .map(|q| q["inventoryItemId"].clone())
        .collect();
    assert_eq!(resent, vec![json!(item_gid(1)), json!(item_gid(3))]);
    if change_from {
        // The resend is another call with another key (same key, other
        // variables would be IDEMPOTENCY_KEY_PARAMETER_MISMATCH).
        assert_ne!(sent[0].idempotency_key(), sent[2].idempotency_key());
    }
}

#[tokio::test(start_paused = true)]
async fn stale_compare_quantity_2025_01() {
    stale_item_is_reported_and_the_rest_applied("2025-01", false).await;
}

#[tokio::test(start_paused = true)]
async fn stale_change_from_quantity_2026_01() {
    stale_item_is_reported_and_the_rest_applied("2026-01", true).await;
}

#[tokio::test(start_paused = true)]
async fn per_item_user_error_is_permanent_and_the_rest_applied() {
    // Item 2 is not stocked at the location.
    let shop = shop_with(&[(1, 0), (3, 0)], false);
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    let out = shopify
        .push(&[
            item(1, 4, Some(0)),
            item(2, 4, Some(0)),
            item(3, 4, Some(0)),
        ])
        .await
        .expect("push");
    assert_eq!(out[0], ItemOutcome::Applied { quantity: 4 });
    assert_eq!(out[2], ItemOutcome::Applied { quantity: 4 });
    let e = failed(&out[1]);
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(e.code, "ITEM_NOT_STOCKED_AT_LOCATION");
    assert_eq!(fake.sent().len(), 2);
    assert_eq!(level(&shop, 3), Some(4));
}

#[tokio::test(start_paused = true)]
async fn missing_and_numeric_external_ids() {
    let big: u64 = 820_982_911_946_154_508; // > 2^53 (§1.1)
    let shop = Arc::new(Mutex::new(Shop::default()));
    shop.lock().expect("lock").levels.insert(
        (item_gid(big), "gid://shopify/Location/655441491".into()),
        1,
    );
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);

    let mut numeric = item(0, 2, Some(1));
    numeric.external = External::new();
    numeric
        .external
        .insert("inventory_item_id".into(), json!(big));
    numeric
        .external
        .insert("location_id".into(), json!("655441491"));
    let mut no_location = item(5, 2, Some(1));
    no_location.external.remove("location_id");
    let mut no_item = item(6, 2, Some(1));
    no_item.external.remove("inventory_item_id");

    let out = shopify
        .push(&[no_location, numeric, no_item])
        .await
        .expect("push");
    assert_eq!(failed(&out[0]).code, "missing_external_id");
    assert_eq!(failed(&out[0]).class, ErrorClass::Permanent);
    assert_eq!(out[1], ItemOutcome::Applied { quantity: 2 });
    assert_eq!(failed(&out[2]).code, "missing_external_id");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].quantities()[0]["inventoryItemId"],
        "gid://shopify/InventoryItem/820982911946154508"
    );
    assert_eq!(
        sent[0].quantities()[0]["locationId"],
        "gid://shopify/Location/655441491"
    );

    // Nothing sendable: nothing sent.
    let mut only = item(7, 1, Some(0));
    only.external.clear();
    let out = shopify.push(&[only]).await.expect("push");
    assert_eq!(failed(&out[0]).code, "missing_external_id");
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn applied_quantity_is_what_the_channel_reports() {
    let fake = Fake::new(|sent| {
        let q = sent.quantities();
        Ok(ok(json!({"inventorySetQuantities": {
            "inventoryAdjustmentGroup": {"reason": "correction", "referenceDocumentUri": "stockd://ledger/42",
                "changes": [{"name": "available", "delta": 1, "quantityAfterChange": 7,
                    "item": {"id": q[0]["inventoryItemId"]}, "location": {"id": q[0]["locationId"]}}]},
            "userErrors": []}})))
    });
    let shopify = connector("2025-01", &fake);
    let out = shopify
        .push(&[item(1, 9, Some(6)), item(2, 4, Some(4))])
        .await
        .expect("push");
    // Item 1 as reported; item 2 had no change entry: the pushed value.
    assert_eq!(
        out,
        vec![
            ItemOutcome::Applied { quantity: 7 },
            ItemOutcome::Applied { quantity: 4 }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn user_errors_naming_no_quantity_fail_the_whole_call_permanently() {
    let fake = Fake::new(|_| {
        Ok(ok(
            json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null,
            "userErrors": [{"code": "INVALID_REFERENCE_DOCUMENT", "field": ["input", "referenceDocumentUri"],
                "message": "The specified reference document is invalid."}]}}),
        ))
    });
    let shopify = connector("2025-01", &fake);
    let out = shopify
        .push(&[item(1, 1, Some(0)), item(2, 1, Some(0))])
        .await
        .expect("per-item outcomes");
    for outcome in &out {
        let e = failed(outcome);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "INVALID_REFERENCE_DOCUMENT")
        );
    }
    assert_eq!(fake.sent().len(), 1, "resending cannot help");
}

#[tokio::test(start_paused = true)]
async fn references_without_a_scheme_become_app_gids() {
    let shop = shop_with(&[(1, 0), (2, 0)], false);
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    let mut a = item(1, 1, Some(0));
    a.reference = "ledger 7".into();
    shopify.push(&[a.clone()]).await.expect("push");
    let mut b = item(2, 1, Some(0));
    b.reference = "stockd://ledger/8".into();
    a.quantity = 2;
    a.believed = Some(1);
    shopify.push(&[a, b]).await.expect("push");
    let sent = fake.sent();
    assert_eq!(
        sent[0].variables()["input"]["referenceDocumentUri"],
        "gid://stockd/Reference/ledger%207"
    );
    let mixed = sent[1].variables()["input"]["referenceDocumentUri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(mixed.starts_with("gid://stockd/PushBatch/"), "{mixed}");
}

// ---------------------------------------------------------------------------
// Rate limiting

fn throttled_body() -> Value {
    json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
        "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
      "extensions": {"cost": {"requestedQueryCost": 752, "actualQueryCost": null,
        "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 666, "restoreRate": 50.0}}}})
}

#[tokio::test(start_paused = true)]
async fn throttled_as_200_waits_for_the_bucket_to_hold_the_cost() {
    let shop = shop_with(&[(1, 0)], false);
    let inner = shop.clone();
    let mut calls = 0;
    let fake = Fake::new(move |sent| {
        calls += 1;
        if calls == 1 {
            return Ok(response(200, throttled_body()));
        }
        inner.lock().expect("lock").handle(sent)
    });
    let shopify = connector("2025-01", &fake);
    let err = shopify
        .push(&[item(1, 3, Some(0))])
        .await
        .expect_err("throttled");
    assert_eq!(err.class, ErrorClass::RateLimited);
    assert_eq!(err.status, Some(200));
    assert!(err
        .body
        .as_deref()
        .unwrap_or_default()
        .contains("THROTTLED"));
    // (752 − 666) / 50 = 1.72 s, plus a small margin.
    let wait = err.retry_after.expect("retry_after");
    assert!(
        wait >= Duration::from_millis(1720) && wait <= Duration::from_millis(2000),
        "{wait:?}"
    );

    // An immediate retry does not leave before then.
    shopify.push(&[item(1, 3, Some(0))]).await.expect("retry");
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1].at - sent[0].at >= wait,
        "{:?}",
        sent[1].at - sent[0].at
    );
    assert_eq!(level(&shop, 1), Some(3));
}

#[tokio::test(start_paused = true)]
async fn throttled_as_429_honours_retry_after() {
    let mut calls = 0;
    let fake = Fake::new(move |_| {
        calls += 1;
        if calls == 1 {
            let mut r = response(429, json!({"errors": "Throttled"}));
            r.headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("2.0"),
            );
            return Ok(r);
        }
        Ok(ok(json!({"nodes": [null]})))
    });
    let shopify = connector("2025-01", &fake);
    let query = [LevelQuery {
        sku: "SKU-1".into(),
        external: external(1),
    }];
    let err = shopify.read_levels(&query).await.expect_err("throttled");
    assert_eq!(err.class, ErrorClass::RateLimited);
    assert_eq!(err.status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));

    let levels = shopify.read_levels(&query).await.expect("read");
    assert_eq!(levels.len(), 1);
    let sent = fake.sent();
    assert!(sent[1].at - sent[0].at >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn throttled_without_any_hint_still_sets_a_retry_after() {
    let mut calls = 0;
    let fake = Fake::new(move |_| {
        calls += 1;
        if calls == 1 {
            return Ok(response(429, json!({})));
        }
        Ok(ok(json!({"nodes": [null]})))
    });
    let shopify = connector("2025-01", &fake);
    let query = [LevelQuery {
        sku: "SKU-1".into(),
        external: external(1),
    }];
    let err = shopify.read_levels(&query).await.expect_err("throttled");
    let wait = err.retry_after.expect("retry_after");
    assert!(wait > Duration::ZERO);
    shopify.read_levels(&query).await.expect("read");
    let sent = fake.sent();
    assert!(sent[1].at - sent[0].at >= wait);
}

#[tokio::test(start_paused = true)]
async fn limiter_adopts_the_channels_throttle_status() {
    // The channel says only 2 points are left, restoring 10 per second.
    let start = Instant::now();
    let fake = Fake::new(|_| {
        Ok(response(
            200,
            json!({"data": {"nodes": [null]}, "extensions": {"cost": {
            "requestedQueryCost": 4, "actualQueryCost": 4,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 2.0, "restoreRate": 10.0}}}}),
        ))
    });
    let shopify = connector("2025-01", &fake);
    let query = [LevelQuery {
        sku: "SKU-1".into(),
        external: external(1),
    }];
    shopify.read_levels(&query).await.expect("first");
    shopify.read_levels(&query).await.expect("second");
    let sent = fake.sent();
    // The first leaves at once from the full local bucket.
    assert_eq!(sent[0].at, start);
    // The second needs its estimated 4 points plus margin (≈ 6.1) and has the
    // channel's 2: it waits for the rest at the channel's 10/s (≈ 0.41 s; at
    // the configured 50/s it would be ≈ 0.08 s).
    let gap = sent[1].at - sent[0].at;
    assert!(gap >= Duration::from_millis(400), "{gap:?}");
    assert!(gap <= Duration::from_millis(450), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn calls_are_cut_to_fit_a_small_bucket() {
    let levels: Vec<(u64, i64)> = (1..=250).map(|n| (n, 0)).collect();
    let shop = shop_with(&levels, false);
    let inner = shop.clone();
    // This shop's bucket holds 300 points.
    let fake = Fake::new(move |sent| {
        let mut r = inner.lock().expect("lock").handle(sent)?;
        let mut body: Value = serde_json::from_slice(&r.body).expect("json");
        body["extensions"]["cost"]["throttleStatus"] =
            json!({"maximumAvailable": 300.0, "currentlyAvailable": 300.0, "restoreRate": 50.0});
        r.body = serde_json::to_vec(&body).expect("json");
        Ok(r)
    });
    let shopify = connector("2025-01", &fake);
    shopify
        .read_levels(&[LevelQuery {
            sku: "A".into(),
            external: external(1),
        }])
        .await
        .expect("read");
    let items: Vec<PushItem> = (1..=250).map(|n| item(n, 1, Some(0))).collect();
    let out = shopify.push(&items).await.expect("push");
    assert!(out
        .iter()
        .all(|o| matches!(o, ItemOutcome::Applied { quantity: 1 })));
    let sizes: Vec<usize> = fake.sent()[1..]
        .iter()
        .map(|s| s.quantities().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 250);
    // 13 + 3n points (plus margin) must fit in 300.
    assert!(sizes.iter().all(|&n| n <= 93 && n > 0), "{sizes:?}");
}

/// A faithful cost bucket (§1.6): requested cost must be available, actual
/// cost is charged, THROTTLED otherwise. Costs here are per the note's rules.
struct Bucket {
    available: f64,
    at: Instant,
    throttled: usize,
}

#[tokio::test(start_paused = true)]
async fn a_paced_client_is_never_throttled_by_a_faithful_bucket() {
    let levels: Vec<(u64, i64)> = (1..=250).map(|n| (n, 0)).collect();
    let shop = shop_with(&levels, false);
    let bucket = Arc::new(Mutex::new(Bucket {
        available: 1000.0,
        at: Instant::now(),
        throttled: 0,
    }));
    let (inner, b) = (shop.clone(), bucket.clone());
    let fake = Fake::new(move |sent| {
        let mut b = b.lock().expect("lock");
        let now = Instant::now();
        b.available = (b.available + (now - b.at).as_secs_f64() * 50.0).min(1000.0);
        b.at = now;
        let n = sent
            .quantities()
            .len()
            .max(sent.variables()["ids"].as_array().map_or(0, Vec::len));
        // Objects 1 per element; a mutation 10.
        let requested = if sent.is_set() {
            13.0 + 3.0 * n as f64
        } else {
            1.0 + 3.0 * n as f64
        };
        if b.available < requested {
            b.throttled += 1;
            let mut body = throttled_body();
            body["extensions"]["cost"]["requestedQueryCost"] = json!(requested);
            body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] = json!(b.available);
            return Ok(response(200, body));
        }
        let actual = requested * 0.9;
        b.available -= actual;
        let mut r = inner.lock().expect("lock").handle(sent)?;
        let mut body: Value = serde_json::from_slice(&r.body).expect("json");
        body["extensions"] = cost(requested, Some(actual), b.available);
        r.body = serde_json::to_vec(&body).expect("json");
        Ok(r)
    });
    let shopify = connector("2025-01", &fake);
    let start = Instant::now();
    for round in 0..12i64 {
        let items: Vec<PushItem> = (1..=250).map(|n| item(n, round + 1, Some(round))).collect();
        let out = shopify.push(&items).await.expect("push");
        assert!(out.iter().all(|o| matches!(o, ItemOutcome::Applied { .. })));
    }
    assert_eq!(bucket.lock().expect("lock").throttled, 0);
    // 12 × 0.9 × 763 points at 50/s from a full 1000: ≈ 145 s. Pacing is
    // conservative but not wasteful.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(140), "{elapsed:?}");
    assert!(elapsed <= Duration::from_secs(200), "{elapsed:?}");
}

// ---------------------------------------------------------------------------
// Error classes

async fn push_error(answer: HttpResponse) -> ChannelError {
    let fake = Fake::new(move |_| Ok(answer.clone()));
    let shopify = connector("2025-01", &fake);
    shopify
        .push(&[item(1, 1, Some(0))])
        .await
        .expect_err("whole call fails")
}

#[tokio::test(start_paused = true)]
async fn http_and_graphql_errors_are_classified() {
    let e = push_error(response(503, json!({"errors": "Service unavailable"}))).await;
    assert_eq!((e.class, e.status), (ErrorClass::Retryable, Some(503)));
    assert!(e
        .body
        .as_deref()
        .unwrap_or_default()
        .contains("unavailable"));

    let e = push_error(response(
        401,
        json!({"errors": "[API] Invalid API key or access token"}),
    ))
    .await;
    assert_eq!((e.class, e.status), (ErrorClass::Permanent, Some(401)));
    assert!(e
        .body
        .as_deref()
        .unwrap_or_default()
        .contains("Invalid API key"));

    for status in [403, 404, 400, 422] {
        let e = push_error(response(status, json!({"errors": "no"}))).await;
        assert_eq!((e.class, e.status), (ErrorClass::Permanent, Some(status)));
    }

    let e = push_error(response(
        200,
        json!({"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}),
    ))
    .await;
    assert_eq!(e.class, ErrorClass::Retryable);
    assert_eq!(e.code, "INTERNAL_SERVER_ERROR");

    let e = push_error(response(
        200,
        json!({"errors": [{"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}}]}),
    ))
    .await;
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Permanent, "ACCESS_DENIED")
    );

    // A 200 that is not GraphQL is classified, not a panic.
    let e = push_error(HttpResponse {
        status: 200,
        headers: http::HeaderMap::new(),
        body: b"<html>gateway</html>".to_vec(),
    })
    .await;
    assert_eq!((e.class, e.status), (ErrorClass::Retryable, Some(200)));
    let e = push_error(ok(json!({"somethingElse": 1}))).await;
    assert_eq!(e.class, ErrorClass::Retryable);

    // Bodies are cut to about 2 KB.
    let e = push_error(HttpResponse {
        status: 500,
        headers: http::HeaderMap::new(),
        body: vec![b'x'; 10_000],
    })
    .await;
    assert!(e.body.as_deref().unwrap_or_default().len() <= 2048 + 3);
}

#[tokio::test(start_paused = true)]
async fn network_failure_is_retryable() {
    let fake = Fake::new(|_| {
        Err(ChannelError::new(
            ErrorClass::Retryable,
            "network",
            "connection refused",
        ))
    });
    let shopify = connector("2025-01", &fake);
    let e = shopify
        .push(&[item(1, 1, Some(0))])
        .await
        .expect_err("fails");
    assert_eq!(e.class, ErrorClass::Retryable);
    let e = shopify
        .read_levels(&[LevelQuery {
            sku: "A".into(),
            external: external(1),
        }])
        .await
        .expect_err("fails");
    assert_eq!(e.class, ErrorClass::Retryable);
}

#[tokio::test(start_paused = true)]
async fn concurrent_idempotent_request_is_retryable() {
    let fake = Fake::new(|_| {
        Ok(ok(
            json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null,
            "userErrors": [{"code": "IDEMPOTENCY_CONCURRENT_REQUEST", "field": null,
                "message": "in progress, please try again"}]}}),
        ))
    });
    let shopify = connector("2026-01", &fake);
    let e = shopify
        .push(&[item(1, 1, Some(0)), item(2, 1, Some(0))])
        .await
        .expect_err("whole call");
    assert_eq!(e.class, ErrorClass::Retryable);
    assert_eq!(e.code, "IDEMPOTENCY_CONCURRENT_REQUEST");
}

// ---------------------------------------------------------------------------
// Reads

#[tokio::test(start_paused = true)]
async fn read_levels_maps_levels_and_unstocked_items() {
    let mut shop = Shop::default();
    shop.levels.insert((item_gid(1), LOCATION.into()), 4);
    shop.levels.insert((item_gid(2), LOCATION.into()), 0);
    shop.levels
        .insert((item_gid(3), "gid://shopify/Location/2".into()), 1);
    let shop = Arc::new(Mutex::new(shop));
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    let mut at_two = external(1);
    at_two.insert("location_id".into(), json!(2));
    let mut broken = external(9);
    broken.remove("inventory_item_id");
    let queries = vec![
        LevelQuery {
            sku: "A".into(),
            external: external(1),
        },
        LevelQuery {
            sku: "B".into(),
            external: external(2),
        },
        LevelQuery {
            sku: "C".into(),
            external: external(3),
        }, // stocked elsewhere only
        LevelQuery {
            sku: "D".into(),
            external: at_two,
        },
        LevelQuery {
            sku: "E".into(),
            external: broken,
        },
        LevelQuery {
            sku: "F".into(),
            external: external(77),
        }, // unknown item
    ];
    let levels = shopify.read_levels(&queries).await.expect("read");
    assert_eq!(
        levels[0],
        Ok(ChannelLevel {
            quantity: Some(4),
            availability: Some(Availability::InStock)
        })
    );
    assert_eq!(
        levels[1],
        Ok(ChannelLevel {
            quantity: Some(0),
            availability: Some(Availability::OutOfStock)
        })
    );
    let e = levels[2].as_ref().expect_err("not stocked");
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Permanent, "ITEM_NOT_STOCKED_AT_LOCATION")
    );
    // Item 1 at location 2 is not stocked there.
    assert!(levels[3].is_err());
    assert_eq!(
        levels[4].as_ref().expect_err("missing").code,
        "missing_external_id"
    );
    assert_eq!(
        levels[5].as_ref().expect_err("unknown").class,
        ErrorClass::Permanent
    );
    // One query per location.
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].variables()["locationId"], LOCATION);
    assert_eq!(sent[0].variables()["ids"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        sent[1].variables()["locationId"],
        "gid://shopify/Location/2"
    );
}

#[tokio::test(start_paused = true)]
async fn read_levels_batches_by_250() {
    let levels: Vec<(u64, i64)> = (1..=300).map(|n| (n, n as i64)).collect();
    let shop = shop_with(&levels, false);
    let fake = serve(&shop);
    let shopify = connector("2025-01", &fake);
    let queries: Vec<LevelQuery> = (1..=300)
        .map(|n| LevelQuery {
            sku: format!("S{n}"),
            external: external(n),
        })
        .collect();
    let out = shopify.read_levels(&queries).await.expect("read");
    for (n, level) in (1..=300).zip(&out) {
        assert_eq!(level.as_ref().ok().and_then(|l| l.quantity), Some(n as i64));
    }
    let sizes: Vec<usize> = fake
        .sent()
        .iter()
        .map(|s| s.variables()["ids"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![250, 50]);
}

// ---------------------------------------------------------------------------
// Webhooks

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hook_headers(topic: &str, signature: &str, webhook_id: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-shopify-topic", topic.parse().expect("header"));
    h.insert("x-shopify-hmac-sha256", signature.parse().expect("header"));
    h.insert("x-shopify-webhook-id", webhook_id.parse().expect("header"));
    h.insert(
        "x-shopify-shop-domain",
        "example.myshopify.com".parse().expect("header"),
    );
    h.insert("x-shopify-api-version", "2025-01".parse().expect("header"));
    h
}

fn with_secret(secret: &str) -> Shopify {
    let fake = Fake::new(|_| Ok(ok(json!({}))));
    Shopify::new(
        Config {
            webhook_secret: secret.into(),
            ..Config::default()
        },
        fake,
    )
}

fn deliver(
    shopify: &Shopify,
    topic: &str,
    body: &Value,
    webhook_id: &str,
) -> Result<WebhookAction, WebhookError> {
    let bytes = serde_json::to_vec(body).expect("json");
    let headers = hook_headers(topic, &sign("shpss_test_secret", &bytes), webhook_id);
    shopify.webhook(&headers, &bytes)
}

#[test]
fn webhook_hmac_matches_the_published_vectors() {
    // §1.8, first row (published and verified).
    let body = br#"{"id":1234567890,"email":"customer@example.com","total_price":"123.45"}"#;
    let sig = "QNyObTlKbMx2qDlPF/ZOZcBqg5OgPg+2oky3zldc0Gw=";
    assert_eq!(sign("test-webhook-secret", body), sig);
    let shopify = with_secret("test-webhook-secret");
    assert_eq!(
        shopify.webhook(&hook_headers("customers/create", sig, "w1"), body),
        Ok(WebhookAction::Ignored {
            topic: "customers/create".into()
        })
    );

    // §1.8, third row: an order with an id above 2^53.
    let body = br#"{"id":820982911946154508,"line_items":[{"id":1,"variant_id":457924702,"sku":"IPOD2008BLACK","quantity":2}]}"#;
    let sig = "KmKU/87boTtemDgvftNR1LGqVXRPoJQqaut84vxRz9E=";
    let shopify = with_secret("shpss_test_secret");
    let action = shopify
        .webhook(&hook_headers("orders/create", sig, "w2"), body)
        .expect("verified");
    assert_eq!(
        action,
        WebhookAction::Order(OrderChange {
            dedup_key: "orders/create:820982911946154508".into(),
            order_id: "820982911946154508".into(),
            kind: OrderChangeKind::Placed,
            lines: vec![OrderLineRef {
                line_id: "1".into(),
                keys: vec![
                    (
                        "variant_id".into(),
                        "gid://shopify/ProductVariant/457924702".into()
                    ),
                    ("sku".into(), "IPOD2008BLACK".into()),
                ],
                qty: 2,
            }],
        })
    );
}

#[test]
fn webhook_rejects_missing_or_wrong_signatures() {
    let shopify = with_secret("shpss_test_secret");
    let body = br#"{"id":1,"line_items":[]}"#;
    let wrong = sign("another-secret", body);
    assert_eq!(
        shopify.webhook(&hook_headers("orders/create", &wrong, "w"), body),
        Err(WebhookError::BadSignature)
    );
    let mut headers = hook_headers("orders/create", &sign("shpss_test_secret", body), "w");
    assert!(shopify.webhook(&headers, body).is_ok());
    // The signature covers the exact bytes.
    assert_eq!(
        shopify.webhook(&headers, br#"{"id":1, "line_items":[]}"#),
        Err(WebhookError::BadSignature)
    );
    headers.remove("x-shopify-hmac-sha256");
    assert_eq!(
        shopify.webhook(&headers, body),
        Err(WebhookError::BadSignature)
    );

    // §1.8 last row is valid HMAC, but an unconfigured secret accepts nothing.
    let unconfigured = with_secret("");
    let headers = hook_headers(
        "orders/create",
        "IvjuqQlACvmK3zaBqfMZI+9rf8ukq7VT2Sgjo+nVwl4=",
        "w",
    );
    assert_eq!(
        sign("", b"{}"),
        "IvjuqQlACvmK3zaBqfMZI+9rf8ukq7VT2Sgjo+nVwl4="
    );
    assert_eq!(
        unconfigured.webhook(&headers, b"{}"),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn webhook_malformed_payloads_are_bad_payload() {
    let shopify = with_secret("shpss_test_secret");
    let body = b"{not json";
    let headers = hook_headers("orders/create", &sign("shpss_test_secret", body), "w");
    assert!(matches!(
        shopify.webhook(&headers, body),
        Err(WebhookError::BadPayload(_))
    ));
    // Valid JSON without an order id.
    assert!(matches!(
        deliver(&shopify, "orders/create", &json!({"line_items": []}), "w"),
        Err(WebhookError::BadPayload(_))
    ));
    assert!(matches!(
        deliver(
            &shopify,
            "orders/create",
            &json!({"id": 5, "line_items": [{"id": 1}]}),
            "w"
        ),
        Err(WebhookError::BadPayload(_))
    ));
}

#[test]
fn webhook_order_topics_and_semantic_dedup_keys() {
    let shopify = with_secret("shpss_test_secret");
    let order = json!({"id": 450789469, "line_items": [
        {"id": 466157049, "variant_id": 39072856, "sku": "IPOD2008GREEN", "quantity": 1},
        {"id": 518995019, "variant_id": null, "sku": "", "quantity": 3},
    ]});
    let first = deliver(&shopify, "orders/create", &order, "delivery-1").expect("ok");
    let again = deliver(&shopify, "orders/create", &order, "delivery-2").expect("ok");
    assert_eq!(first, again, "a re-delivery is the same change");
    let WebhookAction::Order(change) = first else {
        panic!("expected an order change");
    };
    assert_eq!(change.dedup_key, "orders/create:450789469");
    assert_eq!(change.kind, OrderChangeKind::Placed);
    assert_eq!(change.lines.len(), 2);
    assert_eq!(change.lines[1].keys, vec![]);
    assert_eq!(change.lines[1].qty, 3);

    let cancelled = deliver(
        &shopify,
        "orders/cancelled",
        &json!({"id": 450789469, "cancelled_at": "2024-07-02T08:57:24-05:00", "cancel_reason": "customer",
            "line_items": order["line_items"]}),
        "delivery-3",
    )
    .expect("ok");
    assert_eq!(
        cancelled,
        WebhookAction::Order(OrderChange {
            dedup_key: "orders/cancelled:450789469".into(),
            order_id: "450789469".into(),
            kind: OrderChangeKind::Cancelled,
            lines: vec![],
        })
    );

    assert_eq!(
        deliver(
            &shopify,
            "inventory_levels/update",
            &json!({"inventory_item_id": 1, "available": 3}),
            "d"
        ),
        Ok(WebhookAction::Ignored {
            topic: "inventory_levels/update".into()
        })
    );
}

#[test]
fn webhook_refunds_map_restocked_lines_only() {
    let shopify = with_secret("shpss_test_secret");
    let refund = json!({"id": 509562969, "order_id": 450789469, "restock": true, "refund_line_items": [
        {"id": 104689539, "quantity": 1, "line_item_id": 703073504, "location_id": 487838322, "restock_type": "return",
         "line_item": {"id": 703073504, "variant_id": 457924702, "sku": "IPOD2008BLACK", "quantity": 1}},
        {"id": 709875399, "quantity": 2, "line_item_id": 466157049, "location_id": 487838322, "restock_type": "no_restock",
         "line_item": {"id": 466157049, "variant_id": 39072856, "sku": "IPOD2008GREEN", "quantity": 2}},
        {"id": 709875400, "quantity": 1, "line_item_id": 466157050, "restock_type": "legacy_restock",
         "line_item": {"id": 466157050, "variant_id": null, "sku": "CABLE", "quantity": 1}},
    ]});
    let action = deliver(&shopify, "refunds/create", &refund, "d1").expect("ok");
    assert_eq!(
        action,
        WebhookAction::Order(OrderChange {
            dedup_key: "refunds/create:509562969".into(),
            order_id: "450789469".into(),
            kind: OrderChangeKind::Restocked,
            lines: vec![
                OrderLineRef {
                    line_id: "703073504".into(),
                    keys: vec![
                        (
                            "variant_id".into(),
                            "gid://shopify/ProductVariant/457924702".into()
                        ),
                        ("sku".into(), "IPOD2008BLACK".into()),
                    ],
                    qty: 1,
                },
                OrderLineRef {
                    line_id: "466157050".into(),
                    keys: vec![("sku".into(), "CABLE".into())],
                    qty: 1,
                },
            ],
        })
    );
    assert_eq!(
        deliver(&shopify, "refunds/create", &refund, "d2"),
        Ok(action)
    );

    let money_only = json!({"id": 1, "order_id": 2, "restock": false, "refund_line_items": [
        {"id": 3, "quantity": 1, "line_item_id": 4, "restock_type": "no_restock", "line_item": {"id": 4, "variant_id": 5}}]});
    assert_eq!(
        deliver(&shopify, "refunds/create", &money_only, "d3"),
        Ok(WebhookAction::Ignored {
            topic: "refunds/create".into()
        })
    );
}
