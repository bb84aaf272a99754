use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use stockd_sim::bol::{
    bol_stats, register_return, set_process_outcome, ship_order, start, Config, ProcessOutcome,
    RateLimit, TimeUnit, MEDIA_V10, MEDIA_V10_CSV, MEDIA_V11,
};
use stockd_sim::{Faults, RunningSim, SimError};

use crate::common_support::any_addr;

const ID: &str = "client-id";
const SECRET: &str = "client-secret";

const RETAILER_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/bol/retailer-v10.json"
);
const SHARED_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/bol/shared-v10.json"
);

async fn sim_with(cfg: Config) -> RunningSim {
    start(
        Config {
            client_id: ID.into(),
            client_secret: SECRET.into(),
            ..cfg
        },
        any_addr(),
    )
    .await
    .expect("start")
}

async fn token_resp(sim: &RunningSim, id: &str, secret: &str, body: &str) -> (u16, Value) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let r = reqwest::Client::new()
        .post(format!("{}/token", sim.base_url))
        .header("Authorization", format!("Basic {basic}"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn token(sim: &RunningSim) -> String {
    let (s, v) = token_resp(sim, ID, SECRET, "grant_type=client_credentials").await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().expect("token").to_string()
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    sim: &RunningSim,
    tok: &str,
    method: &str,
    path: &str,
    media: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let c = reqwest::Client::new();
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = c
        .request(m, format!("{}{path}", sim.base_url))
        .bearer_auth(tok);
    if let Some(media) = media {
        rb = rb.header("Accept", media);
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", media.unwrap_or(MEDIA_V10))
            .body(b.to_string());
    }
    let r = rb.send().await.expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("text");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    Resp {
        status,
        headers,
        body,
    }
}

async fn get(sim: &RunningSim, tok: &str, path: &str) -> Resp {
    call(sim, tok, "GET", path, Some(MEDIA_V10), None).await
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("spec {path}: {e}"));
    serde_json::from_str(&text).expect("spec json")
}

/// Check `v` against an OpenAPI schema: `$ref`, `allOf`, required fields, types, enums.
fn check(root: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return check(root, &root["components"]["schemas"][name], v, at, errs);
    }
    if let Some(all) = schema["allOf"].as_array() {
        if v.is_null() && schema["nullable"] == true {
            return;
        }
        for s in all {
            check(root, s, v, at, errs);
        }
        return;
    }
    if v.is_null() {
        if schema["nullable"] != true && !schema.is_null() {
            errs.push(format!("{at}: null not allowed"));
        }
        return;
    }
    let ok = match schema["type"].as_str() {
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        _ => true,
    };
    if !ok {
        errs.push(format!("{at}: expected {}, got {v}", schema["type"]));
        return;
    }
    if let Some(en) = schema["enum"].as_array() {
        if !en.contains(v) {
            errs.push(format!("{at}: {v} not in enum"));
        }
    }
    if let Some(req) = schema["required"].as_array() {
        for f in req.iter().filter_map(Value::as_str) {
            if v.get(f).is_none() {
                errs.push(format!("{at}: missing required {f}"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, x) in obj {
            if let Some(ps) = props.get(k) {
                check(root, ps, x, &format!("{at}.{k}"), errs);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(root, items, x, &format!("{at}[{i}]"), errs);
        }
    }
}

fn assert_schema(spec: &Value, name: &str, v: &Value) {
    let schema = &spec["components"]["schemas"][name];
    assert!(schema.is_object(), "schema {name} missing from spec");
    let mut errs = Vec::new();
    check(spec, schema, v, name, &mut errs);
    assert!(errs.is_empty(), "{name}: {errs:?}\n{v}");
}

/// Poll a process until it leaves PENDING, with a deadline.
async fn wait_process(sim: &RunningSim, tok: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(sim, tok, &format!("/shared/process-status/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body["status"] != "PENDING" || Instant::now() > deadline {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn offer_id(sim: &RunningSim, sku: &str) -> String {
    sim.listings()
        .into_iter()
        .find(|l| l.sku == sku)
        .and_then(|l| l.external["offer_id"].as_str().map(str::to_string))
        .expect("listing")
}

#[tokio::test]
async fn listings_carry_the_agreed_external_ids() {
    let sim = sim_with(Config::default()).await;
    let created = sim.add_listings(&[("SKU-1".into(), 5), ("SKU-2".into(), 1500)]);
    assert_eq!(created.len(), 2);
    for l in &created {
        let mut keys: Vec<&str> = l.external.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["ean", "offer_id"]);
        let ean = l.external["ean"].as_str().unwrap();
        assert_eq!(ean.len(), 13);
        let digits: Vec<u32> = ean.chars().map(|c| c.to_digit(10).unwrap()).collect();
        let sum: u32 = digits[..12]
            .iter()
            .enumerate()
            .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
            .sum();
        assert_eq!((10 - sum % 10) % 10, digits[12], "check digit of {ean}");
        assert_eq!(l.external["offer_id"].as_str().unwrap().len(), 36);
    }
    assert_eq!(created[0].quantity, 5);
    assert_eq!(created[0].availability, "in_stock");
    // v10 caps stock at 999.
    assert_eq!(created[1].quantity, 999);
    assert_eq!(sim.listings(), created);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_flow_and_counting() {
    let sim = sim_with(Config::default()).await;
    let (s, v) = token_resp(&sim, ID, "wrong", "grant_type=client_credentials").await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = token_resp(&sim, ID, SECRET, "grant_type=password").await;
    assert_eq!(s, 400);
    let (s, v) = token_resp(&sim, ID, SECRET, "grant_type=client_credentials").await;
    assert_eq!(s, 200);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 299);
    assert_eq!(v["scope"], "RETAILER");
    let tok = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(tok.split('.').count(), 3, "JWT-shaped");
    let r = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&sim, "not-a-token", "/retailer/orders").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["status"], 401);
    assert_eq!(r.body["type"], "https://api.bol.com/problems");
    let stats = bol_stats(&sim).unwrap();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.token_requests_while_valid, 0);
    // A client asking a new token while its token is valid is visible.
    token(&sim).await;
    let stats: Value = reqwest::get(format!("{}/_sim/bol/stats", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["tokens_issued"], 2);
    assert_eq!(stats["token_requests_while_valid"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_get_401_problem() {
    let sim = sim_with(Config {
        token_ttl_secs: 0,
        ..Default::default()
    })
    .await;
    let tok = token(&sim).await;
    let r = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(r.status, 401);
    let spec = load(RETAILER_SPEC);
    assert_schema(&spec, "Problem", &r.body);
    sim.shutdown().await;

    let sim = sim_with(Config {
        token_ttl_secs: 2,
        ..Default::default()
    })
    .await;
    let tok = token(&sim).await;
    assert_eq!(get(&sim, &tok, "/retailer/orders").await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(8);
    // Polled on the 25/s order-detail bucket (the list allows 25/min): 404 while valid.
    let mut status = 404;
    while status == 404 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = get(&sim, &tok, "/retailer/orders/NOPE").await.status;
    }
    assert_eq!(status, 401, "token must expire after its ttl");
    sim.shutdown().await;
}

#[tokio::test]
async fn media_types_are_negotiated() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("M-1".into(), 3)]);
    let oid = offer_id(&sim, "M-1");
    let tok = token(&sim).await;
    let path = format!("/retailer/offers/{oid}");
    let r = call(&sim, &tok, "GET", &path, None, None).await;
    assert_eq!(r.status, 406, "missing Accept");
    assert_eq!(r.body["status"], 406);
    let r = call(
        &sim,
        &tok,
        "GET",
        &path,
        Some("application/vnd.retailer.v9+json"),
        None,
    )
    .await;
    assert_eq!(r.status, 406, "old version");
    let r = call(&sim, &tok, "GET", &path, Some("application/json"), None).await;
    assert_eq!(r.status, 406);
    // Wrong Content-Type on a body.
    let r = reqwest::Client::new()
        .put(format!("{}{path}/stock", sim.base_url))
        .bearer_auth(&tok)
        .header("Accept", MEDIA_V10)
        .header("Content-Type", "application/json")
        .body(json!({"amount": 1, "managedByRetailer": false}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // v10 and v11 both served on offers, each in its own shape and content type.
    let r = get(&sim, &tok, &path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], MEDIA_V10);
    assert_schema(&load(RETAILER_SPEC), "RetailerOffer", &r.body);
    assert_eq!(r.body["reference"], "M-1");
    let r = call(&sim, &tok, "GET", &path, Some(MEDIA_V11), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], MEDIA_V11);
    for f in [
        "offerId",
        "lastModifiedDateTime",
        "onHoldByRetailer",
        "condition",
        "pricing",
        "fulfilment",
    ] {
        assert!(r.body.get(f).is_some(), "OfferResponse.{f}: {}", r.body);
    }
    assert_eq!(r.body["stock"]["amount"], 3);
    sim.shutdown().await;

    let sim = sim_with(Config {
        v11_enabled: false,
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("M-1".into(), 3)]);
    let oid = offer_id(&sim, "M-1");
    let tok = token(&sim).await;
    let r = call(
        &sim,
        &tok,
        "GET",
        &format!("/retailer/offers/{oid}"),
        Some(MEDIA_V11),
        None,
    )
    .await;
    assert_eq!(r.status, 406);
    sim.shutdown().await;
}

#[tokio::test]
async fn stock_update_applies_only_at_success() {
    let shared = load(SHARED_SPEC);
    // A process that stays pending: nothing is applied.
    let sim = sim_with(Config {
        process_delay: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("S-1".into(), 4)]);
    let oid = offer_id(&sim, "S-1");
    let tok = token(&sim).await;
    let r = call(
        &sim,
        &tok,
        "PUT",
        &format!("/retailer/offers/{oid}/stock"),
        Some(MEDIA_V10),
        Some(json!({"amount": 9, "managedByRetailer": false})),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_schema(&shared, "ProcessStatus", &r.body);
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["eventType"], "UPDATE_OFFER_STOCK");
    assert_eq!(r.body["entityId"], oid.as_str());
    let pid = r.body["processStatusId"].as_str().unwrap().to_string();
    let p = get(&sim, &tok, &format!("/shared/process-status/{pid}")).await;
    assert_eq!(p.body["status"], "PENDING");
    assert_eq!(sim.listings()[0].quantity, 4);
    let o = get(&sim, &tok, &format!("/retailer/offers/{oid}")).await;
    assert_eq!(o.body["stock"]["amount"], 4);
    assert_eq!(sim.stats().updates_applied, 0);
    sim.shutdown().await;

    // Default delay: PENDING, then SUCCESS and the stock is applied.
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("S-1".into(), 4)]);
    let oid = offer_id(&sim, "S-1");
    let tok = token(&sim).await;
    let r = call(
        &sim,
        &tok,
        "PUT",
        &format!("/retailer/offers/{oid}/stock"),
        Some(MEDIA_V10),
        Some(json!({"amount": 9, "managedByRetailer": false})),
    )
    .await;
    assert_eq!(r.status, 202);
    let pid = r.body["processStatusId"].as_str().unwrap().to_string();
    let done = wait_process(&sim, &tok, &pid).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_schema(&shared, "ProcessStatus", &done);
    assert_eq!(sim.listings()[0].quantity, 9);
    let o = get(&sim, &tok, &format!("/retailer/offers/{oid}")).await;
    assert_eq!(
        o.body["stock"],
        json!({"amount": 9, "correctedStock": 9, "managedByRetailer": false})
    );
    assert_eq!(sim.stats().updates_applied, 1);
    // By entity and in bulk.
    let r = get(
        &sim,
        &tok,
        &format!("/shared/process-status?entity-id={oid}&event-type=UPDATE_OFFER_STOCK"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["processStatuses"][0]["processStatusId"],
        pid.as_str()
    );
    let r = call(
        &sim,
        &tok,
        "POST",
        "/shared/process-status",
        Some(MEDIA_V10),
        Some(json!({"processStatusQueries": [{"processStatusId": pid}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["processStatuses"][0]["status"], "SUCCESS");
    let r = get(&sim, &tok, "/shared/process-status?entity-id=1").await;
    assert_eq!(r.status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn stock_body_is_validated() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("V-1".into(), 4)]);
    let oid = offer_id(&sim, "V-1");
    let tok = token(&sim).await;
    let spec = load(RETAILER_SPEC);
    let path = format!("/retailer/offers/{oid}/stock");
    for bad in [
        json!({"amount": 1000, "managedByRetailer": false}),
        json!({"amount": -1, "managedByRetailer": false}),
        json!({"amount": 5}),
        json!({"managedByRetailer": true}),
        json!({"amount": "5", "managedByRetailer": true}),
    ] {
        let r = call(&sim, &tok, "PUT", &path, Some(MEDIA_V10), Some(bad.clone())).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_schema(&spec, "Problem", &r.body);
        assert!(
            !r.body["violations"].as_array().unwrap().is_empty(),
            "{}",
            r.body
        );
    }
    let r = call(
        &sim,
        &tok,
        "PUT",
        &path,
        Some(MEDIA_V10),
        Some(json!({"amount": 999, "managedByRetailer": false})),
    )
    .await;
    assert_eq!(r.status, 202);
    let done = wait_process(&sim, &tok, r.body["processStatusId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(sim.listings()[0].quantity, 999);
    sim.shutdown().await;
}

#[tokio::test]
async fn failure_and_timeout_leave_stock_unchanged() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("F-1".into(), 4), ("T-1".into(), 4), ("H-1".into(), 4)]);
    let tok = token(&sim).await;
    sim.set_faults(Faults {
        reject_skus: vec!["F-1".into()],
        ..Default::default()
    });
    assert!(set_process_outcome(&sim, "T-1", ProcessOutcome::Timeout));
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/bol/process-outcome", sim.base_url))
        .json(&json!({"sku": "H-1", "outcome": "FAILURE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for (sku, want) in [("F-1", "FAILURE"), ("T-1", "TIMEOUT"), ("H-1", "FAILURE")] {
        let oid = offer_id(&sim, sku);
        let r = call(
            &sim,
            &tok,
            "PUT",
            &format!("/retailer/offers/{oid}/stock"),
            Some(MEDIA_V10),
            Some(json!({"amount": 7, "managedByRetailer": false})),
        )
        .await;
        assert_eq!(r.status, 202);
        let done = wait_process(&sim, &tok, r.body["processStatusId"].as_str().unwrap()).await;
        assert_eq!(done["status"], want, "{sku}: {done}");
        if want == "FAILURE" {
            assert!(done["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let o = get(&sim, &tok, &format!("/retailer/offers/{oid}")).await;
        assert_eq!(o.body["stock"]["amount"], 4, "{sku}");
    }
    assert_eq!(sim.stats().updates_applied, 0);
    assert!(sim.stats().injected_faults >= 1);
    // An unknown offer fails in the process (the spec lists only 202/400 for this PUT).
    let r = call(
        &sim,
        &tok,
        "PUT",
        "/retailer/offers/00000000-0000-4000-8000-000000000000/stock",
        Some(MEDIA_V10),
        Some(json!({"amount": 7, "managedByRetailer": false})),
    )
    .await;
    assert_eq!(r.status, 202);
    let done = wait_process(&sim, &tok, r.body["processStatusId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "FAILURE");
    sim.shutdown().await;
}

#[tokio::test]
async fn process_status_expires_with_404() {
    let sim = sim_with(Config {
        process_delay: Duration::ZERO,
        process_expiry: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("E-1".into(), 4)]);
    let oid = offer_id(&sim, "E-1");
    let tok = token(&sim).await;
    let r = call(
        &sim,
        &tok,
        "PUT",
        &format!("/retailer/offers/{oid}/stock"),
        Some(MEDIA_V10),
        Some(json!({"amount": 2, "managedByRetailer": false})),
    )
    .await;
    let pid = r.body["processStatusId"].as_str().unwrap().to_string();
    let path = format!("/shared/process-status/{pid}");
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seen = Vec::new();
    loop {
        let r = get(&sim, &tok, &path).await;
        seen.push(r.status);
        if r.status == 404 {
            assert_schema(&load(SHARED_SPEC), "Problem", &r.body);
            break;
        }
        assert_eq!(r.body["status"], "SUCCESS");
        assert!(Instant::now() < deadline, "never expired: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen[0], 200, "{seen:?}");
    assert_eq!(sim.listings()[0].quantity, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn v11_patch_is_synchronous() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("P-1".into(), 4)]);
    let oid = offer_id(&sim, "P-1");
    let tok = token(&sim).await;
    let path = format!("/retailer/offers/{oid}");
    let r = call(
        &sim,
        &tok,
        "PATCH",
        &path,
        Some(MEDIA_V11),
        Some(json!({"stock": {"amount": 7, "managedByRetailer": true}})),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(sim.listings()[0].quantity, 7);
    let r = call(&sim, &tok, "GET", &path, Some(MEDIA_V11), None).await;
    assert_eq!(r.body["stock"]["amount"], 7);
    assert_eq!(r.body["stock"]["managedByRetailer"], true);
    assert_eq!(sim.stats().updates_applied, 1);
    // v10 media type on the v11 PATCH, and a bad body.
    let r = call(
        &sim,
        &tok,
        "PATCH",
        &path,
        Some(MEDIA_V10),
        Some(json!({"stock": {"amount": 1}})),
    )
    .await;
    assert_eq!(r.status, 406);
    let r = call(
        &sim,
        &tok,
        "PATCH",
        &path,
        Some(MEDIA_V11),
        Some(json!({"stock": {"amount": -3}})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(sim.listings()[0].quantity, 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn buy_and_cancel_show_in_orders() {
    let spec = load(RETAILER_SPEC);
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("O-1".into(), 5), ("O-2".into(), 2)]);
    let tok = token(&sim).await;
    let empty = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(empty.status, 200);
    assert!(
        empty.body == json!({}) || empty.body == json!({"orders": []}),
        "{}",
        empty.body
    );
    assert_eq!(
        sim.buy(&[("O-2".into(), 3)]).await,
        Err(SimError::NotAvailable)
    );
    assert!(matches!(
        sim.buy(&[("NOPE".into(), 1)]).await,
        Err(SimError::UnknownSku(_))
    ));
    let order = sim
        .buy(&[("O-1".into(), 2), ("O-2".into(), 1)])
        .await
        .unwrap();
    let ls = sim.listings();
    assert_eq!(ls[0].quantity, 3);
    assert_eq!(ls[1].quantity, 1);
    let list = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(list.status, 200);
    assert_schema(&spec, "ReducedOrders", &list.body);
    let o = &list.body["orders"][0];
    assert_eq!(o["orderId"], order.as_str());
    let items = o["orderItems"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    // The list carries only the EAN (§1.5).
    assert_eq!(items[0]["ean"], ls[0].external["ean"]);
    assert!(items[0].get("offer").is_none() && items[0].get("offerId").is_none());
    assert_eq!(items[0]["fulfilmentStatus"], "OPEN");
    let detail = get(&sim, &tok, &format!("/retailer/orders/{order}")).await;
    assert_eq!(detail.status, 200);
    assert_schema(&spec, "Order", &detail.body);
    let d0 = &detail.body["orderItems"][0];
    assert_eq!(d0["offer"]["offerId"], ls[0].external["offer_id"]);
    assert_eq!(d0["offer"]["reference"], "O-1");
    assert_eq!(d0["product"]["ean"], ls[0].external["ean"]);
    assert_eq!(d0["quantity"], 2);
    let nf = get(&sim, &tok, "/retailer/orders/NOPE").await;
    assert_eq!(nf.status, 404);
    assert_schema(&spec, "Problem", &nf.body);
    // correctedStock in the offer.
    let oid = ls[0].external["offer_id"].as_str().unwrap();
    let off = get(&sim, &tok, &format!("/retailer/offers/{oid}")).await;
    assert_eq!(off.body["stock"]["amount"], 5);
    assert_eq!(off.body["stock"]["correctedStock"], 3);
    // Filters.
    let r = get(&sim, &tok, "/retailer/orders?fulfilment-method=FBB").await;
    assert!(r.body.get("orders").is_none_or(|o| o == &json!([])));
    let r = get(&sim, &tok, "/retailer/orders?change-interval-minute=5").await;
    assert_eq!(r.body["orders"].as_array().map(Vec::len), Some(1));
    let r = get(&sim, &tok, "/retailer/orders?change-interval-minute=61").await;
    assert_eq!(r.status, 400);
    let r = get(&sim, &tok, "/retailer/orders?status=BOGUS").await;
    assert_eq!(r.status, 400);
    assert_schema(&spec, "Problem", &r.body);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let r = get(
        &sim,
        &tok,
        &format!("/retailer/orders?latest-change-date={today}"),
    )
    .await;
    assert_eq!(r.body["orders"].as_array().map(Vec::len), Some(1));
    let r = get(&sim, &tok, "/retailer/orders?page=2").await;
    assert!(r.body.get("orders").is_none_or(|o| o == &json!([])));
    // Customer cancels: items handled, flagged as the customer's request, stock shown again.
    sim.cancel_order(&order).await.unwrap();
    assert_eq!(sim.listings()[0].quantity, 5);
    let r = get(&sim, &tok, "/retailer/orders?status=ALL").await;
    assert_schema(&spec, "ReducedOrders", &r.body);
    let it = &r.body["orders"][0]["orderItems"][0];
    assert_eq!(it["cancellationRequest"], true);
    assert_eq!(it["quantityCancelled"], 2);
    assert_eq!(it["fulfilmentStatus"], "HANDLED");
    let r = get(&sim, &tok, "/retailer/orders").await;
    assert!(r.body.get("orders").is_none_or(|o| o == &json!([])));
    assert!(matches!(
        sim.cancel_order(&order).await,
        Err(SimError::InvalidState(_))
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_cancellation_request_needs_confirmation() {
    let sim = sim_with(Config {
        cancel_requires_confirmation: true,
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("C-1".into(), 3)]);
    let tok = token(&sim).await;
    let order = sim.buy(&[("C-1".into(), 2)]).await.unwrap();
    sim.cancel_order(&order).await.unwrap();
    assert_eq!(sim.listings()[0].quantity, 1, "still open until confirmed");
    let r = get(&sim, &tok, "/retailer/orders").await;
    let it = r.body["orders"][0]["orderItems"][0].clone();
    assert_eq!(it["cancellationRequest"], true);
    assert_eq!(it["fulfilmentStatus"], "OPEN");
    let item_id = it["orderItemId"].as_str().unwrap().to_string();
    let bad = call(
        &sim,
        &tok,
        "PUT",
        "/retailer/orders/cancellation",
        Some(MEDIA_V10),
        Some(json!({"orderItems": [{"orderItemId": item_id, "reasonCode": "NOPE"}]})),
    )
    .await;
    assert_eq!(bad.status, 400);
    let r = call(
        &sim,
        &tok,
        "PUT",
        "/retailer/orders/cancellation",
        Some(MEDIA_V10),
        Some(json!({"orderItems": [{"orderItemId": item_id, "reasonCode": "REQUESTED_BY_CUSTOMER"}]})),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["eventType"], "CANCEL_ORDER");
    let done = wait_process(&sim, &tok, r.body["processStatusId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(sim.listings()[0].quantity, 3);
    let d = get(&sim, &tok, &format!("/retailer/orders/{order}")).await;
    assert_eq!(d.body["orderItems"][0]["quantityCancelled"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn managed_by_retailer_counts_only_later_orders() {
    let sim = sim_with(Config {
        process_delay: Duration::ZERO,
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("R-1".into(), 10)]);
    let oid = offer_id(&sim, "R-1");
    let tok = token(&sim).await;
    sim.buy(&[("R-1".into(), 3)]).await.unwrap();
    assert_eq!(sim.listings()[0].quantity, 7);
    let r = call(
        &sim,
        &tok,
        "PUT",
        &format!("/retailer/offers/{oid}/stock"),
        Some(MEDIA_V10),
        Some(json!({"amount": 6, "managedByRetailer": true})),
    )
    .await;
    let done = wait_process(&sim, &tok, r.body["processStatusId"].as_str().unwrap()).await;
    assert_eq!(done["status"], "SUCCESS");
    // The earlier open order no longer counts.
    assert_eq!(sim.listings()[0].quantity, 6);
    sim.buy(&[("R-1".into(), 2)]).await.unwrap();
    let o = get(&sim, &tok, &format!("/retailer/offers/{oid}")).await;
    assert_eq!(o.body["stock"]["correctedStock"], 4);
    assert_eq!(sim.listings()[0].quantity, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    assert!(Config::default()
        .rate_limits
        .iter()
        .any(|r| r.path == "/retailer/offers/*/stock" && r.max_capacity == 50));
    let sim = sim_with(Config {
        rate_limits: vec![RateLimit::new(
            "GET",
            "/retailer/orders",
            2,
            TimeUnit::Minutes,
        )],
        ..Default::default()
    })
    .await;
    let tok = token(&sim).await;
    for _ in 0..2 {
        let r = get(&sim, &tok, "/retailer/orders").await;
        assert_eq!(r.status, 200);
        assert!(r.headers.contains_key("x-ratelimit-remaining"));
    }
    let r = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(r.status, 429);
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    assert_schema(&load(RETAILER_SPEC), "Problem", &r.body);
    // Another endpoint has its own bucket (here: none).
    let r = get(&sim, &tok, "/retailer/orders/NOPE").await;
    assert_eq!(r.status, 404);
    let st = sim.stats();
    assert_eq!(st.rate_limit_violations, 1);
    assert_eq!(st.injected_faults, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_throttle_and_outage() {
    let sim = sim_with(Config::default()).await;
    let tok = token(&sim).await;
    sim.set_faults(Faults {
        throttle_storm_secs: 60.0,
        retry_after_secs: Some(3.0),
        ..Default::default()
    });
    let r = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    sim.set_faults(Faults {
        outage_secs: 60.0,
        ..Default::default()
    });
    let r = get(&sim, &tok, "/retailer/orders").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["status"], 503);
    let st = sim.stats();
    assert_eq!(st.injected_faults, 2);
    assert_eq!(st.rate_limit_violations, 0);
    sim.set_faults(Faults::default());
    assert_eq!(get(&sim, &tok, "/retailer/orders").await.status, 200);
    sim.shutdown().await;
}

#[test]
fn schema_checker_rejects_bad_payloads() {
    let spec = load(RETAILER_SPEC);
    let schema = &spec["components"]["schemas"]["ReducedOrders"];
    let mut errs = Vec::new();
    let bad = json!({"orders": [{"orderId": 1, "orderItems": [{"ean": "1"}]}]});
    check(&spec, schema, &bad, "ReducedOrders", &mut errs);
    assert!(
        errs.iter().any(|e| e.contains("orderId: expected")),
        "{errs:?}"
    );
    assert!(errs
        .iter()
        .any(|e| e.contains("missing required orderPlacedDateTime")));
    assert!(errs
        .iter()
        .any(|e| e.contains("missing required fulfilmentStatus")));
    let mut errs = Vec::new();
    check(&spec, schema, &json!({}), "ReducedOrders", &mut errs);
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[tokio::test]
async fn returns_of_shipped_items_are_listed_unhandled() {
    let spec = load(RETAILER_SPEC);
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("RET-1".into(), 5)]);
    let tok = token(&sim).await;
    let empty = get(&sim, &tok, "/retailer/returns?handled=false").await;
    assert_eq!((empty.status, &empty.body), (200, &json!({"returns": []})));
    let order = sim.buy(&[("RET-1".into(), 3)]).await.unwrap();
    let detail = get(&sim, &tok, &format!("/retailer/orders/{order}")).await;
    let item = detail.body["orderItems"][0]["orderItemId"]
        .as_str()
        .unwrap()
        .to_string();
    // Nothing shipped yet: nothing can come back.
    assert!(matches!(
        register_return(&sim, &item, 1),
        Err(SimError::InvalidState(_))
    ));
    let http = reqwest::Client::new();
    let shipped = http
        .post(format!("{}/_sim/bol/orders/{order}/ship", sim.base_url))
        .send()
        .await
        .expect("send");
    assert_eq!(shipped.status(), 200);
    assert!(matches!(
        ship_order(&sim, &order),
        Err(SimError::InvalidState(_))
    ));
    let registered = http
        .post(format!("{}/_sim/bol/returns", sim.base_url))
        .json(&json!({"order_item_id": item, "quantity": 2}))
        .send()
        .await
        .expect("send");
    assert_eq!(registered.status(), 200);
    let rma: Value = registered.json().await.expect("json");
    // 2 of 3 shipped units are back: one more at most.
    assert!(matches!(
        register_return(&sim, &item, 2),
        Err(SimError::InvalidState(_))
    ));
    let list = get(
        &sim,
        &tok,
        "/retailer/returns?page=1&handled=false&fulfilment-method=FBR",
    )
    .await;
    assert_eq!(list.status, 200);
    assert_schema(&spec, "ReturnsResponse", &list.body);
    let returned = &list.body["returns"][0]["returnItems"][0];
    assert_eq!(returned["rmaId"], rma["rma_id"]);
    assert_eq!(returned["orderId"], order.as_str());
    assert_eq!(returned["ean"], sim.listings()[0].external["ean"]);
    assert_eq!(returned["expectedQuantity"], 2);
    for query in ["handled=true", "fulfilment-method=FBB", "page=2"] {
        let none = get(&sim, &tok, &format!("/retailer/returns?{query}")).await;
        assert_eq!(none.body, json!({"returns": []}), "{query}");
    }
    let bad = get(&sim, &tok, "/retailer/returns?fulfilment-method=ALL").await;
    assert_eq!(bad.status, 400);
    assert_schema(&spec, "Problem", &bad.body);
    let no_token = reqwest::get(format!("{}/retailer/returns", sim.base_url))
        .await
        .expect("send");
    assert_eq!(no_token.status(), 401);
}

/// The offers export: request (validated), PENDING without a report id,
/// SUCCESS with `entityId` after the processing time, the CSV under its media
/// type with bol's header and every offer (also ones no client listed), 404
/// for an unknown report, and bol's 10 exports an hour.
#[tokio::test]
async fn offers_export_lifecycle_file_and_hourly_limit() {
    let sim = sim_with(Config {
        export_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("EX-1".into(), 4), ("EX, \"2\"".into(), 0)]);
    sim.edit_quantity("EX-1", 6).expect("edit");
    let tok = token(&sim).await;
    let bad = call(
        &sim,
        &tok,
        "POST",
        "/retailer/offers/export",
        Some(MEDIA_V10),
        Some(json!({"format": "XML"})),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_schema(&load(RETAILER_SPEC), "Problem", &bad.body);
    let started = call(
        &sim,
        &tok,
        "POST",
        "/retailer/offers/export",
        Some(MEDIA_V10),
        Some(json!({"format": "CSV"})),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_schema(&load(SHARED_SPEC), "ProcessStatus", &started.body);
    assert_eq!(started.body["eventType"], "CREATE_OFFER_EXPORT");
    assert_eq!(started.body["status"], "PENDING");
    assert!(started.body["entityId"].is_null(), "{}", started.body);
    let id = started.body["processStatusId"].as_str().expect("id");
    let done = wait_process(&sim, &tok, id).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let report = done["entityId"].as_str().expect("entityId").to_string();
    let download = |accept: &'static str, report: String| {
        let url = format!("{}/retailer/offers/export/{report}", sim.base_url);
        let tok = tok.clone();
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(tok)
                .header("Accept", accept)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (status, ct, r.text().await.expect("text"))
        }
    };
    let (status, _, _) = download(MEDIA_V10, report.clone()).await;
    assert_eq!(status, 406);
    let (status, ct, _) = download(MEDIA_V10_CSV, "no-such-report".into()).await;
    assert_eq!((status, ct.as_str()), (404, MEDIA_V10_CSV));
    let (status, ct, file) = download(MEDIA_V10_CSV, report).await;
    assert_eq!((status, ct.as_str()), (200, MEDIA_V10_CSV), "{file}");
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(
        lines[0],
        "offerId,ean,conditionName,conditionCategory,conditionComment,bundlePricesPrice,\
         fulfilmentDeliveryCode,stockAmount,onHoldByRetailer,fulfilmentType,mutationDateTime,\
         referenceCode,correctedStock"
    );
    assert_eq!(lines.len(), 3, "{file}");
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[0], offer_id(&sim, "EX-1"));
    assert_eq!(first[7], "6", "{file}");
    assert_eq!(first[9], "FBR");
    assert!(first[10].ends_with(" UTC"), "{file}");
    assert_eq!(first[11], "EX-1");
    assert!(lines[2].contains(",\"EX, \"\"2\"\"\","), "{file}");
    // 10 an hour: two used above, eight more, then 429 with Retry-After.
    for _ in 0..8 {
        let r = call(
            &sim,
            &tok,
            "POST",
            "/retailer/offers/export",
            Some(MEDIA_V10),
            Some(json!({"format": "CSV"})),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let limited = call(
        &sim,
        &tok,
        "POST",
        "/retailer/offers/export",
        Some(MEDIA_V10),
        Some(json!({"format": "CSV"})),
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let secs: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 60, "{secs}");
    sim.shutdown().await;
}
