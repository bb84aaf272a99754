use std::time::Duration;

use serde_json::{json, Value};
use stockd_sim::shopify::{start, Config};
use stockd_sim::{Faults, RunningSim};

use crate::common_support::{any_addr, receiver};

const TOKEN: &str = "shpat_test";

async fn sim_with(cfg: Config) -> RunningSim {
    start(
        Config {
            access_token: TOKEN.into(),
            ..cfg
        },
        any_addr(),
    )
    .await
    .expect("start")
}

async fn gql(
    sim: &RunningSim,
    version: &str,
    query: &str,
    vars: Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .post(format!("{}/admin/api/{version}/graphql.json", sim.base_url))
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.expect("json"), headers)
}

const SET: &str = r#"mutation Set($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { createdAt reason referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"#;

fn set_idem(key: &str) -> String {
    SET.replace(
        "inventorySetQuantities(input: $input)",
        &format!("inventorySetQuantities(input: $input) @idempotent(key: \"{key}\")"),
    )
}

fn input(qs: Value) -> Value {
    json!({"input": {"name": "available", "reason": "correction", "referenceDocumentUri": "gid://stockd/Sync/1", "quantities": qs}})
}

fn ext(sim_item: &stockd_sim::SimListing, k: &str) -> String {
    sim_item.external[k].as_str().unwrap().to_string()
}

fn avail(sim: &RunningSim, sku: &str) -> i64 {
    sim.listings()
        .into_iter()
        .find(|l| l.sku == sku)
        .unwrap()
        .quantity
}

fn codes(v: &Value) -> Vec<String> {
    v["data"]["inventorySetQuantities"]["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn wrong_token_is_401_with_shopify_shape() {
    let sim = sim_with(Config::default()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/admin/api/2025-10/graphql.json", sim.base_url))
        .header("X-Shopify-Access-Token", "nope")
        .json(&json!({"query": "{ locations(first: 1) { nodes { id } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["errors"],
        "[API] Invalid API key or access token (unrecognized login or wrong password)"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cas_up_to_2025_10_compare_quantity() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5), ("B".into(), 7)]);
    let (a, b) = (&ls[0], &ls[1]);
    let q = |l: &stockd_sim::SimListing, qty: i64, cmp: Option<i64>| {
        let mut v = json!({"inventoryItemId": ext(l, "inventory_item_id"), "locationId": ext(l, "location_id"), "quantity": qty});
        if let Some(c) = cmp {
            v["compareQuantity"] = json!(c);
        }
        v
    };
    // Missing compareQuantity.
    let (_, v, _) = gql(&sim, "2025-10", SET, input(json!([q(a, 9, None)]))).await;
    assert_eq!(codes(&v), vec!["COMPARE_QUANTITY_REQUIRED"]);
    assert_eq!(
        v["data"]["inventorySetQuantities"]["userErrors"][0]["field"],
        json!(["input", "quantities", "0", "compareQuantity"])
    );
    // One stale item fails the whole mutation.
    let (_, v, _) = gql(
        &sim,
        "2025-10",
        SET,
        input(json!([q(a, 9, Some(5)), q(b, 1, Some(99))])),
    )
    .await;
    assert_eq!(codes(&v), vec!["COMPARE_QUANTITY_STALE"]);
    assert!(v["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"].is_null());
    assert_eq!((avail(&sim, "A"), avail(&sim, "B")), (5, 7));
    // Correct compare applies.
    let (_, v, _) = gql(&sim, "2025-10", SET, input(json!([q(a, 9, Some(5))]))).await;
    assert!(codes(&v).is_empty(), "{v}");
    let g = &v["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"];
    assert_eq!(g["reason"], "correction");
    assert_eq!(g["referenceDocumentUri"], "gid://stockd/Sync/1");
    let changes = g["changes"].as_array().unwrap();
    assert!(changes.contains(&json!({"name": "available", "delta": 4, "quantityAfterChange": 9})));
    assert_eq!(avail(&sim, "A"), 9);
    // ignoreCompareQuantity opts out.
    let mut inp = input(json!([q(b, 3, None)]));
    inp["input"]["ignoreCompareQuantity"] = json!(true);
    let (_, v, _) = gql(&sim, "2025-10", SET, inp).await;
    assert!(codes(&v).is_empty(), "{v}");
    assert_eq!(avail(&sim, "B"), 3);
    // changeFromQuantity does not exist before 2026-01.
    let (_, v, _) = gql(&sim, "2025-10", SET, input(json!([{"inventoryItemId": ext(a, "inventory_item_id"), "locationId": ext(a, "location_id"), "quantity": 1, "changeFromQuantity": 9}]))).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changeFromQuantity (Field is not defined on InventoryQuantityInput)"),
        "{v}"
    );
    assert!(v.get("data").is_none());
    assert_eq!(sim.stats().updates_applied, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn cas_2026_01_change_from_quantity() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let (item, loc) = (ext(&ls[0], "inventory_item_id"), ext(&ls[0], "location_id"));
    let (_, v, _) = gql(&sim, "2026-01", SET, input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 8, "changeFromQuantity": 4}]))).await;
    assert_eq!(codes(&v), vec!["CHANGE_FROM_QUANTITY_STALE"]);
    // changeFromQuantity overrides a (stale) compareQuantity.
    let (_, v, _) = gql(&sim, "2026-01", SET, input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 8, "changeFromQuantity": 5, "compareQuantity": 99}]))).await;
    assert!(codes(&v).is_empty(), "{v}");
    // Explicit null opts out of the check.
    let (_, v, _) = gql(&sim, "2026-01", SET, input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 2, "changeFromQuantity": null}]))).await;
    assert!(codes(&v).is_empty(), "{v}");
    assert_eq!(avail(&sim, "A"), 2);
    // Absent: the legacy compareQuantity rule still applies.
    let (_, v, _) = gql(
        &sim,
        "2026-01",
        SET,
        input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 2}])),
    )
    .await;
    assert_eq!(codes(&v), vec!["COMPARE_QUANTITY_REQUIRED"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn cas_and_idempotency_required_from_2026_04() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let (item, loc) = (ext(&ls[0], "inventory_item_id"), ext(&ls[0], "location_id"));
    // compareQuantity was removed.
    let (_, v, _) = gql(&sim, "2026-04", &set_idem("k1"), input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 1, "compareQuantity": 5, "changeFromQuantity": 5}]))).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("compareQuantity"),
        "{v}"
    );
    // changeFromQuantity must be present.
    let (_, v, _) = gql(
        &sim,
        "2026-04",
        &set_idem("k2"),
        input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 1}])),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changeFromQuantity"),
        "{v}"
    );
    // The idempotency key is required.
    let (_, v, _) = gql(&sim, "2026-04", SET, input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 1, "changeFromQuantity": 5}]))).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("@idempotent"),
        "{v}"
    );
    assert_eq!(avail(&sim, "A"), 5);
    let (_, v, _) = gql(&sim, "2026-04", &set_idem("k3"), input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 6, "changeFromQuantity": 4}]))).await;
    assert_eq!(codes(&v), vec!["CHANGE_FROM_QUANTITY_STALE"]);
    let (_, v, _) = gql(&sim, "2026-04", &set_idem("k4"), input(json!([{"inventoryItemId": item, "locationId": loc, "quantity": 6, "changeFromQuantity": 5}]))).await;
    assert!(codes(&v).is_empty(), "{v}");
    assert_eq!(avail(&sim, "A"), 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn idempotent_replay_and_mismatch() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let (item, loc) = (ext(&ls[0], "inventory_item_id"), ext(&ls[0], "location_id"));
    let vars = input(
        json!([{"inventoryItemId": item, "locationId": loc, "quantity": 7, "changeFromQuantity": 5}]),
    );
    let (_, first, _) = gql(&sim, "2026-01", &set_idem("key-1"), vars.clone()).await;
    assert!(codes(&first).is_empty(), "{first}");
    // Replay: the stored value is now 7, so a re-execution would be stale; a replay is not.
    let (_, again, _) = gql(&sim, "2026-01", &set_idem("key-1"), vars.clone()).await;
    assert_eq!(first["data"], again["data"]);
    assert_eq!(sim.stats().updates_applied, 1);
    let other = input(
        json!([{"inventoryItemId": item, "locationId": loc, "quantity": 8, "changeFromQuantity": 7}]),
    );
    let (_, v, _) = gql(&sim, "2026-01", &set_idem("key-1"), other).await;
    assert_eq!(codes(&v), vec!["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]);
    assert_eq!(avail(&sim, "A"), 7);
    // The directive does not exist before 2026-01.
    let legacy = input(
        json!([{"inventoryItemId": item, "locationId": loc, "quantity": 8, "compareQuantity": 7}]),
    );
    let (_, v, _) = gql(&sim, "2025-10", &set_idem("key-2"), legacy).await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "undefinedDirective",
        "{v}"
    );
    assert!(v.get("data").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_same_key_is_reported() {
    let sim = sim_with(Config {
        mutation_processing_time: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let (item, loc) = (ext(&ls[0], "inventory_item_id"), ext(&ls[0], "location_id"));
    let vars = input(
        json!([{"inventoryItemId": item, "locationId": loc, "quantity": 7, "changeFromQuantity": 5}]),
    );
    let q = set_idem("same");
    let (a, b) = tokio::join!(gql(&sim, "2026-01", &q, vars.clone()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gql(&sim, "2026-01", &q, vars.clone()).await
    });
    assert!(codes(&a.1).is_empty(), "{}", a.1);
    assert_eq!(codes(&b.1), vec!["IDEMPOTENCY_CONCURRENT_REQUEST"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn strict_documents_and_reads() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5), ("B".into(), 0)]);
    let (_, v, _) = gql(
        &sim,
        "2025-10",
        "{ inventoryItemz(first: 1) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        v["errors"][0]["message"],
        "Field 'inventoryItemz' doesn't exist on type 'QueryRoot'"
    );
    assert_eq!(v["errors"][0]["extensions"]["code"], "undefinedField");
    assert!(v.get("data").is_none());
    let (_, v, _) = gql(
        &sim,
        "2025-10",
        "{ inventoryItems(first: 1) { nodes { id bogus } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        v["errors"][0]["message"],
        "Field 'bogus' doesn't exist on type 'InventoryItem'"
    );
    let (_, v, _) = gql(
        &sim,
        "2025-10",
        "{ inventoryItems { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first or last"),
        "{v}"
    );
    let (_, v, _) = gql(
        &sim,
        "2025-10",
        "{ inventoryItems(first: 1) { nodes { id } ",
        json!({}),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Parse error"),
        "{v}"
    );

    let read = r#"query Levels($q: String, $loc: ID!) {
      inventoryItems(first: 10, query: $q) {
        edges { cursor node { id sku inventoryLevel(locationId: $loc) { id quantities(names: ["available", "on_hand", "committed"]) { name quantity } } } }
        pageInfo { hasNextPage endCursor }
      }
    }"#;
    let loc = ext(&ls[0], "location_id");
    let (_, v, _) = gql(&sim, "2026-01", read, json!({"q": "sku:A", "loc": loc})).await;
    let edges = v["data"]["inventoryItems"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{v}");
    let node = &edges[0]["node"];
    assert_eq!(node["id"], ls[0].external["inventory_item_id"]);
    assert_eq!(node["sku"], "A");
    assert!(node["inventoryLevel"]["id"]
        .as_str()
        .unwrap()
        .contains("?inventory_item_id="));
    assert_eq!(
        node["inventoryLevel"]["quantities"],
        json!([{"name": "available", "quantity": 5}, {"name": "on_hand", "quantity": 5}, {"name": "committed", "quantity": 0}])
    );

    let nodes = r#"query($ids: [ID!]!, $loc: ID!) { nodes(ids: $ids) { __typename ... on InventoryItem { id sku inventoryLevel(locationId: $loc) { quantities(names: ["available"]) { name quantity } } } } }"#;
    let ids = json!([
        ls[1].external["inventory_item_id"],
        "gid://shopify/InventoryItem/1"
    ]);
    let (_, v, _) = gql(&sim, "2026-01", nodes, json!({"ids": ids, "loc": loc})).await;
    assert_eq!(v["data"]["nodes"][0]["sku"], "B", "{v}");
    assert_eq!(
        v["data"]["nodes"][0]["inventoryLevel"]["quantities"][0]["quantity"],
        0
    );
    assert!(v["data"]["nodes"][1].is_null());
    let cost = &v["extensions"]["cost"];
    assert!(
        cost["requestedQueryCost"].as_i64().unwrap() >= cost["actualQueryCost"].as_i64().unwrap()
    );
    sim.shutdown().await;
}

/// `__typename` names the schema's own types on connections and edges, as
/// normalising caches (Apollo, Relay) need.
#[tokio::test]
async fn typename_of_connections_and_edges() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("A".into(), 1), ("B".into(), 2)]);
    let q = r#"{ inventoryItems(first: 1) { __typename edges { __typename cursor node { __typename sku } }
      nodes { __typename } pageInfo { __typename hasNextPage } }
      locations(first: 5) { __typename edges { __typename } } }"#;
    let (s, v, _) = gql(&sim, "2025-01", q, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let items = &v["data"]["inventoryItems"];
    assert_eq!(items["__typename"], "InventoryItemConnection", "{v}");
    assert_eq!(items["edges"][0]["__typename"], "InventoryItemEdge");
    assert_eq!(items["edges"][0]["node"]["__typename"], "InventoryItem");
    assert_eq!(items["nodes"][0]["__typename"], "InventoryItem");
    assert_eq!(items["pageInfo"]["__typename"], "PageInfo");
    assert_eq!(items["pageInfo"]["hasNextPage"], true);
    let locations = &v["data"]["locations"];
    assert_eq!(locations["__typename"], "LocationConnection");
    assert_eq!(locations["edges"][0]["__typename"], "LocationEdge");
    // A fragment on the connection type applies to it.
    let q = r#"{ inventoryItems(first: 5) { ...page } } fragment page on InventoryItemConnection { nodes { sku } }"#;
    let (_, v, _) = gql(&sim, "2025-01", q, json!({})).await;
    assert_eq!(v["data"]["inventoryItems"]["nodes"][1]["sku"], "B", "{v}");
    sim.shutdown().await;
}

/// Response maps come in the order the query asked for (GraphQL spec,
/// "Serialization Format"), not sorted.
#[tokio::test]
async fn response_fields_in_query_order() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 1), ("B".into(), 2)]);
    let raw = |v: &str| -> String { v.split_whitespace().collect::<Vec<_>>().join("") };
    let q = r#"{ zz: inventoryItems(first: 2) { pageInfo { hasNextPage } nodes { sku id ...more } }
      aa: locations(first: 1) { nodes { name id } } }
      fragment more on InventoryItem { tracked __typename sku }"#;
    let r = reqwest::Client::new()
        .post(format!("{}/admin/api/2025-01/graphql.json", sim.base_url))
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&json!({"query": q}))
        .send()
        .await
        .unwrap();
    let text = raw(&r.text().await.unwrap());
    let order = |keys: &[&str]| {
        let at: Vec<usize> = keys
            .iter()
            .map(|k| {
                text.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{k} in {text}"))
            })
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "{keys:?} out of order in {text}"
        );
    };
    order(&[
        "zz",
        "pageInfo",
        "hasNextPage",
        "nodes",
        "sku",
        "id",
        "tracked",
        "__typename",
        "aa",
    ]);
    order(&["aa", "name"]);
    assert!(text.starts_with("{\"data\":"), "{text}");
    // A mutation's payload too.
    let m = r#"mutation Set($input: InventorySetQuantitiesInput!) {
      inventorySetQuantities(input: $input) { userErrors { message code field } inventoryAdjustmentGroup { reason createdAt } } }"#;
    let loc = ext(&ls[0], "location_id");
    let item = ext(&ls[0], "inventory_item_id");
    let vars = input(
        json!([{"inventoryItemId": item, "locationId": loc, "quantity": 4, "compareQuantity": 1}]),
    );
    let r = reqwest::Client::new()
        .post(format!("{}/admin/api/2025-01/graphql.json", sim.base_url))
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&json!({"query": m, "variables": vars}))
        .send()
        .await
        .unwrap();
    let text = raw(&r.text().await.unwrap());
    let at = |k: &str| {
        text.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} in {text}"))
    };
    assert!(at("userErrors") < at("inventoryAdjustmentGroup"), "{text}");
    assert!(at("reason") < at("createdAt"), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn not_stocked_bounds_and_250_limit() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let item = ext(&ls[0], "inventory_item_id");
    let (_, v, _) = gql(
        &sim,
        "2025-10",
        "{ locations(first: 5) { nodes { id } } }",
        json!({}),
    )
    .await;
    let locs: Vec<String> = v["data"]["locations"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    let other = locs
        .iter()
        .find(|l| **l != ext(&ls[0], "location_id"))
        .unwrap()
        .clone();
    let (_, v, _) = gql(&sim, "2025-10", SET, input(json!([{"inventoryItemId": item, "locationId": other, "quantity": 1, "compareQuantity": 0}]))).await;
    assert_eq!(codes(&v), vec!["ITEM_NOT_STOCKED_AT_LOCATION"]);
    let mut inp = input(
        json!([{"inventoryItemId": item, "locationId": ext(&ls[0], "location_id"), "quantity": 1_000_000_001}]),
    );
    inp["input"]["ignoreCompareQuantity"] = json!(true);
    let (_, v, _) = gql(&sim, "2025-10", SET, inp).await;
    assert_eq!(codes(&v), vec!["INVALID_QUANTITY_TOO_HIGH"]);
    let many: Vec<Value> = (0..251).map(|i| json!({"inventoryItemId": format!("gid://shopify/InventoryItem/{i}"), "locationId": other, "quantity": 1, "compareQuantity": 0})).collect();
    let (_, v, _) = gql(&sim, "2025-10", SET, input(Value::Array(many))).await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("250"),
        "{v}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bucket_throttles_and_refunds() {
    for status in [200u16, 429] {
        let sim = sim_with(Config {
            bucket_size: 25.0,
            restore_rate: 0.0,
            throttle_status: status,
            ..Config::default()
        })
        .await;
        let ls = sim.add_listings(&[("A".into(), 5)]);
        // A connection query: requested 2 + 10 × node cost, actual from the single item returned.
        let (_, v, _) = gql(
            &sim,
            "2026-01",
            "{ inventoryItems(first: 10) { nodes { id sku } } }",
            json!({}),
        )
        .await;
        let c = &v["extensions"]["cost"];
        let (req, act) = (
            c["requestedQueryCost"].as_f64().unwrap(),
            c["actualQueryCost"].as_f64().unwrap(),
        );
        assert_eq!(req, 12.0, "{v}");
        assert_eq!(act, 3.0, "{v}");
        assert_eq!(
            c["throttleStatus"]["currentlyAvailable"].as_f64().unwrap(),
            25.0 - act
        );
        assert_eq!(
            c["throttleStatus"]["maximumAvailable"].as_f64().unwrap(),
            25.0
        );
        let vars = input(
            json!([{"inventoryItemId": ext(&ls[0], "inventory_item_id"), "locationId": ext(&ls[0], "location_id"), "quantity": 1, "changeFromQuantity": null}]),
        );
        // 22 left: two mutations of 10, then throttled.
        for _ in 0..2 {
            let (s, v, _) = gql(&sim, "2026-01", SET, vars.clone()).await;
            assert_eq!(s, 200);
            assert_eq!(v["extensions"]["cost"]["requestedQueryCost"], 10);
        }
        let (s, v, _) = gql(&sim, "2026-01", SET, vars.clone()).await;
        assert_eq!(s, status);
        assert_eq!(v["errors"][0]["message"], "Throttled");
        assert_eq!(v["errors"][0]["extensions"]["code"], "THROTTLED");
        assert!(v.get("data").is_none());
        assert!(v["extensions"]["cost"]["actualQueryCost"].is_null());
        assert_eq!(
            v["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"],
            2
        );
        let st = sim.stats();
        assert_eq!(st.rate_limit_violations, 1);
        assert_eq!(st.injected_faults, 0);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn orders_webhooks_signed_and_stock_moves() {
    let (url, sink) = receiver().await;
    let sim = sim_with(Config {
        webhook_url: Some(url),
        webhook_secret: "app-secret".into(),
        webhook_topics: vec![
            "orders/create".into(),
            "orders/cancelled".into(),
            "refunds/create".into(),
            "inventory_levels/update".into(),
        ],
        ..Config::default()
    })
    .await;
    sim.add_listings(&[("A".into(), 3)]);
    assert_eq!(
        sim.buy(&[("A".into(), 5)]).await,
        Err(stockd_sim::SimError::NotAvailable)
    );
    let id = sim.buy(&[("A".into(), 2)]).await.unwrap();
    assert_eq!(avail(&sim, "A"), 1);
    let (_, v, _) = gql(&sim, "2026-01", r#"{ inventoryItems(first: 1) { nodes { inventoryLevels(first: 1) { nodes { quantities(names: ["available", "committed", "on_hand"]) { name quantity } } } } } }"#, json!({})).await;
    assert_eq!(
        v["data"]["inventoryItems"]["nodes"][0]["inventoryLevels"]["nodes"][0]["quantities"],
        json!([{"name": "available", "quantity": 1}, {"name": "committed", "quantity": 2}, {"name": "on_hand", "quantity": 3}])
    );
    sim.cancel_order(&id).await.unwrap();
    assert_eq!(avail(&sim, "A"), 3);
    let got = sink.wait_for(4).await;
    let topics: Vec<String> = got.iter().map(|r| r.header("x-shopify-topic")).collect();
    assert_eq!(
        topics,
        vec![
            "orders/create",
            "inventory_levels/update",
            "orders/cancelled",
            "inventory_levels/update"
        ]
    );
    for r in &got {
        assert_eq!(
            r.header("x-shopify-hmac-sha256"),
            stockd_sim::hmac_sha256_base64(b"app-secret", &r.body)
        );
        for h in [
            "x-shopify-shop-domain",
            "x-shopify-api-version",
            "x-shopify-webhook-id",
            "x-shopify-triggered-at",
            "x-shopify-event-id",
        ] {
            assert!(!r.header(h).is_empty(), "{h}");
        }
    }
    let order = got[0].json();
    assert_eq!(order["id"].as_u64().unwrap().to_string(), id);
    assert_eq!(order["line_items"][0]["sku"], "A");
    assert_eq!(order["line_items"][0]["quantity"], 2);
    assert!(order["line_items"][0]["variant_id"].is_u64());
    assert!(got[2].json()["cancelled_at"].is_string());
    assert_eq!(got[1].json()["available"], 1);
    // A delivery counts once its answer is in, a moment after the receiver
    // saw the body.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.stats().webhooks_sent < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.stats().webhooks_sent, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn webhook_retry_keeps_payload_and_id() {
    let (url, sink) = receiver().await;
    sink.script.lock().unwrap().extend([500, 503]);
    let sim = sim_with(Config {
        webhook_url: Some(url),
        webhook_retry_delays: vec![Duration::from_millis(20); 8],
        ..Config::default()
    })
    .await;
    sim.add_listings(&[("A".into(), 3)]);
    sim.buy(&[("A".into(), 1)]).await.unwrap();
    let got = sink.wait_for(3).await;
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0].body == w[1].body
        && w[0].header("x-shopify-webhook-id") == w[1].header("x-shopify-webhook-id")));
    // A delivery counts once its answer is in, a moment after the receiver
    // saw the body.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.stats().webhooks_sent < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = sim.stats();
    assert_eq!((st.webhooks_failed, st.webhooks_sent), (2, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_storm_outage_reject() {
    let sim = sim_with(Config {
        throttle_status: 429,
        ..Config::default()
    })
    .await;
    let ls = sim.add_listings(&[("A".into(), 3)]);
    let q = "{ locations(first: 1) { nodes { id } } }";
    sim.set_faults(Faults {
        throttle_storm_secs: 5.0,
        retry_after_secs: Some(2.0),
        ..Faults::default()
    });
    let (s, v, h) = gql(&sim, "2026-01", q, json!({})).await;
    assert_eq!(s, 429);
    assert_eq!(v["errors"][0]["extensions"]["code"], "THROTTLED");
    assert_eq!(h.get("retry-after").unwrap(), "2");
    sim.set_faults(Faults {
        outage_secs: 5.0,
        ..Faults::default()
    });
    let (s, _, _) = gql(&sim, "2026-01", q, json!({})).await;
    assert_eq!(s, 503);
    sim.set_faults(Faults {
        reject_skus: vec!["A".into()],
        ..Faults::default()
    });
    let vars = input(
        json!([{"inventoryItemId": ext(&ls[0], "inventory_item_id"), "locationId": ext(&ls[0], "location_id"), "quantity": 1, "changeFromQuantity": null}]),
    );
    let (_, v, _) = gql(&sim, "2026-01", SET, vars.clone()).await;
    assert_eq!(codes(&v), vec!["ITEM_NOT_STOCKED_AT_LOCATION"]);
    sim.set_faults(Faults::default());
    let (_, v, _) = gql(&sim, "2026-01", SET, vars).await;
    assert!(codes(&v).is_empty());
    let st = sim.stats();
    assert_eq!(st.injected_faults, 3);
    assert_eq!(st.rate_limit_violations, 0);
    assert_eq!(st.requests, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_webhooks_and_refund() {
    let (url, sink) = receiver().await;
    let sim = sim_with(Config {
        webhook_url: Some(url),
        ..Config::default()
    })
    .await;
    sim.add_listings(&[("A".into(), 3)]);
    sim.set_faults(Faults {
        duplicate_webhook_rate: 1.0,
        ..Faults::default()
    });
    let id = sim.buy(&[("A".into(), 2)]).await.unwrap();
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(
        got[0].header("x-shopify-webhook-id"),
        got[1].header("x-shopify-webhook-id")
    );
    assert_eq!(sim.stats().injected_faults, 1);
    sim.set_faults(Faults::default());
    sim.refund_order(&id, true).await.unwrap();
    let got = sink.wait_for(3).await;
    assert_eq!(got[2].header("x-shopify-topic"), "refunds/create");
    let refund = got[2].json();
    assert_eq!(refund["order_id"].as_u64().unwrap().to_string(), id);
    assert_eq!(refund["refund_line_items"][0]["restock_type"], "return");
    assert_eq!(refund["refund_line_items"][0]["quantity"], 2);
    assert_eq!(avail(&sim, "A"), 3);
    assert!(sim.cancel_order(&id).await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn adjust_quantities_deltas_and_ledger_rules() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let (item, loc) = (ext(&ls[0], "inventory_item_id"), ext(&ls[0], "location_id"));
    let q = r#"mutation Adj($input: InventoryAdjustQuantitiesInput!) {
      inventoryAdjustQuantities(input: $input) @idempotent(key: "adj-1") {
        inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
        userErrors { code field message }
      }
    }"#;
    let adj_codes = |v: &Value| -> Vec<String> {
        v["data"]["inventoryAdjustQuantities"]["userErrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap().to_string())
            .collect()
    };
    let bad = json!({"input": {"name": "damaged", "reason": "damaged", "changes": [{"delta": 1, "inventoryItemId": item, "locationId": loc}]}});
    let (_, v, _) = gql(&sim, "2026-01", &q.replace("adj-1", "adj-0"), bad).await;
    assert_eq!(adj_codes(&v), vec!["INVALID_LEDGER_DOCUMENT"], "{v}");
    let ok = json!({"input": {"name": "available", "reason": "received", "changes": [{"delta": -2, "inventoryItemId": item, "locationId": loc, "changeFromQuantity": 5}]}});
    let (_, v, _) = gql(&sim, "2026-01", q, ok.clone()).await;
    assert!(adj_codes(&v).is_empty(), "{v}");
    let ch = v["data"]["inventoryAdjustQuantities"]["inventoryAdjustmentGroup"]["changes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(ch.contains(&json!({"name": "available", "delta": -2, "quantityAfterChange": 3})));
    // Replay under the same key applies nothing more.
    let (_, v2, _) = gql(&sim, "2026-01", q, ok).await;
    assert_eq!(v["data"], v2["data"]);
    assert_eq!(avail(&sim, "A"), 3);
    sim.shutdown().await;
}

/// A refusal by schema validation, as Shopify answers it: status 200, `errors` only.
fn refused(status: u16, v: &Value) -> &Value {
    assert_eq!(status, 200, "{v}");
    assert!(v.get("data").is_none(), "{v}");
    let errors = v["errors"].as_array().expect("errors");
    assert!(!errors.is_empty(), "{v}");
    &errors[0]
}

#[tokio::test]
async fn documents_the_admin_schema_refuses_are_refused_like_shopify() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("A".into(), 5)]);

    // A field the schema does not have, with where it is.
    let (s, v, _) = gql(
        &sim,
        "2025-01",
        "query Items { inventoryItems(first: 1) { nodes { id unitCostz } } }",
        json!({}),
    )
    .await;
    let e = refused(s, &v);
    assert_eq!(
        e["message"],
        "Field 'unitCostz' doesn't exist on type 'InventoryItem'"
    );
    assert_eq!(e["extensions"]["code"], "undefinedField");
    assert_eq!(e["extensions"]["typeName"], "InventoryItem");
    assert_eq!(e["locations"][0]["line"], 1);
    assert_eq!(
        e["path"],
        json!(["query Items", "inventoryItems", "nodes", "unitCostz"])
    );

    // An argument of the wrong type.
    let (s, v, _) = gql(
        &sim,
        "2025-01",
        r#"{ inventoryItems(first: "ten") { nodes { id } } }"#,
        json!({}),
    )
    .await;
    let e = refused(s, &v);
    assert_eq!(
        e["extensions"]["code"], "argumentLiteralsIncompatible",
        "{v}"
    );

    // A required variable not given.
    let (s, v, _) = gql(
        &sim,
        "2025-01",
        "query Item($id: ID!) { inventoryItem(id: $id) { id } }",
        json!({}),
    )
    .await;
    let e = refused(s, &v);
    assert_eq!(
        e["message"],
        "Variable $id of type ID! was provided invalid value"
    );
    assert_eq!(
        e["extensions"]["problems"][0]["explanation"],
        "Expected value to not be null"
    );

    // A fragment used but not defined.
    let (s, v, _) = gql(
        &sim,
        "2025-01",
        "{ inventoryItems(first: 1) { nodes { ...Missing } } }",
        json!({}),
    )
    .await;
    let e = refused(s, &v);
    assert_eq!(e["message"], "Fragment Missing was used, but not defined");
    assert_eq!(e["extensions"]["code"], "useAndDefineFragment");

    // A field of the real schema that the hand-written subset did not know is accepted by
    // validation; the simulator says it does not emulate it rather than answer a null.
    let (s, v, _) = gql(
        &sim,
        "2025-01",
        "{ inventoryItems(first: 1) { nodes { id harmonizedSystemCode } } }",
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["errors"][0]["extensions"]["code"], "NOT_EMULATED", "{v}");
    assert!(
        v["data"]["inventoryItems"]["nodes"][0]["id"].is_string(),
        "{v}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_connectors_documents_are_all_accepted() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 5)]);
    let (item, loc) = (ext(&ls[0], "inventory_item_id"), ext(&ls[0], "location_id"));
    // An order, for the order poll's documents; 4 stay available.
    let order = sim.buy(&[("A".into(), 1)]).await.expect("order");
    let order_id = json!(format!("gid://shopify/Order/{order}"));
    let documents = stockd_channels::shopify::graphql_documents();
    assert!(
        documents.len() >= 5,
        "level query, both set flavours, order poll"
    );
    let mut current = 4;
    for doc in &documents {
        let mut runs = Vec::new();
        if doc.contains("StockdOrdersSince") {
            let vars = json!({"first": 25, "query": "updated_at:>'2026-01-01T00:00:00Z'"});
            runs.push(("2025-01", vars.clone()));
            runs.push(("2026-01", vars));
        } else if doc.contains("StockdOrder(") {
            runs.push(("2025-01", json!({"id": order_id})));
        } else if doc.contains("inventorySetQuantities") {
            let quantity = |cas: &str, at: i64| {
                json!({"input": {"name": "available", "reason": "correction",
                    "referenceDocumentUri": "stockd://ledger/1",
                    "quantities": [{"inventoryItemId": item, "locationId": loc, "quantity": at + 1, cas: at}]}})
            };
            if doc.contains("@idempotent") {
                runs.push(("2026-01", quantity("changeFromQuantity", current)));
            } else {
                runs.push(("2025-01", quantity("compareQuantity", current)));
            }
            current += 1;
        } else {
            let vars = json!({"ids": [item], "locationId": loc});
            runs.push(("2025-01", vars.clone()));
            runs.push(("2026-01", vars));
        }
        for (version, vars) in runs {
            let (s, v, _) = gql(&sim, version, doc, vars).await;
            assert_eq!(s, 200, "{v}");
            assert!(v.get("errors").is_none(), "{version}: {v}\n{doc}");
            if doc.contains("StockdOrdersSince") {
                let read = &v["data"]["orders"]["nodes"][0];
                assert_eq!(read["id"], order_id, "{v}");
                assert_eq!(read["lineItems"]["nodes"][0]["quantity"], 1, "{v}");
            } else if doc.contains("StockdOrder(") {
                assert_eq!(v["data"]["order"]["id"], order_id, "{v}");
            } else if doc.contains("inventorySetQuantities") {
                assert!(codes(&v).is_empty(), "{version}: {v}");
            } else {
                assert!(v["data"]["nodes"][0]["inventoryLevel"].is_object(), "{v}");
            }
        }
    }
    // Each set moved the quantity on by one from the 4 left after the
    // order: both set flavours applied.
    assert_eq!(avail(&sim, "A"), 6);
    sim.shutdown().await;
}
