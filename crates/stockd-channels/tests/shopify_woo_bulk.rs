//! Bulk reads (`Connector::read_all`) of the Shopify and WooCommerce
//! connectors against the running simulators: every listing the channel
//! shows, with its quantity after back-office edits, including listings
//! stockd does not know, and the requests the read cost.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::shopify::{self, BulkPolling, Shopify};
use stockd_channels::woocommerce::{self, WooCommerce};
use stockd_channels::{
    BulkRead, ChannelError, Connector, ErrorClass, ReqwestTransport, ShownListing,
};
use stockd_sim::{NewListing, RunningSim, SimListing};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn transport() -> Arc<ReqwestTransport> {
    Arc::new(ReqwestTransport::new(Duration::from_secs(30)).expect("client"))
}

/// A merchant edits a quantity in the back office (`/_sim`), behind stockd's back.
async fn edit(sim: &RunningSim, sku: &str, quantity: i64) {
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/listings/{sku}/quantity", sim.base_url))
        .json(&json!({ "quantity": quantity }))
        .send()
        .await
        .expect("edit sent");
    assert_eq!(response.status(), 200, "edit of {sku}");
}

async fn read_all(connector: &dyn Connector) -> (Result<BulkRead, ChannelError>, u64) {
    let seen = AtomicU64::new(0);
    let progress = |n: u64| {
        seen.fetch_max(n, Ordering::Relaxed);
    };
    let read = tokio::time::timeout(Duration::from_secs(60), connector.read_all(&progress))
        .await
        .expect("the read finishes");
    (read, seen.load(Ordering::Relaxed))
}

/// Checks every listing stockd knows (its stored `external`) against the
/// read, and that the read shows exactly those plus `unknown`.
fn assert_shows(
    connector: &dyn Connector,
    read: &BulkRead,
    known: &[SimListing],
    expected: &HashMap<String, i64>,
    unknown: &[(&str, i64)],
) {
    let by_key: HashMap<&str, &ShownListing> =
        read.listings.iter().map(|l| (l.key.as_str(), l)).collect();
    assert_eq!(by_key.len(), read.listings.len(), "keys are unique");
    for listing in known {
        let key = connector
            .listing_key(&listing.external)
            .expect("a stored listing has a key");
        let shown = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("{} ({key}) is not in the read", listing.sku));
        assert_eq!(
            shown.level.quantity,
            Some(expected[&listing.sku]),
            "{}",
            listing.sku
        );
        assert_eq!(shown.channel_sku.as_deref(), Some(listing.sku.as_str()));
    }
    for (sku, quantity) in unknown {
        let shown = read
            .listings
            .iter()
            .find(|l| l.channel_sku.as_deref() == Some(*sku))
            .unwrap_or_else(|| panic!("the unknown listing {sku} is in the read"));
        assert_eq!(shown.level.quantity, Some(*quantity));
    }
    assert_eq!(read.listings.len(), known.len() + unknown.len());
}

// ---------------------------------------------------------------------------
// Shopify

async fn shopify_sim(config: stockd_sim::shopify::Config) -> RunningSim {
    stockd_sim::shopify::start(config, any_port())
        .await
        .expect("simulator starts")
}

fn shopify_connector(sim: &RunningSim, version: &str) -> Shopify {
    let config = shopify::Config {
        shop_url: sim.base_url.clone(),
        api_version: version.into(),
        access_token: stockd_sim::shopify::Config::default().access_token,
        webhook_secret: "secret".into(),
        ..shopify::Config::default()
    };
    Shopify::new(config, transport()).with_bulk_polling(BulkPolling {
        first: Duration::from_millis(50),
        max: Duration::from_millis(200),
        give_up_after: Duration::from_secs(60),
    })
}

async fn shopify_read_finds_edits_and_unknown_listings(version: &str, escape: bool) {
    let sim = shopify_sim(stockd_sim::shopify::Config {
        bulk_escape_slashes: escape,
        ..Default::default()
    })
    .await;
    let items: Vec<(String, i64)> = (0..40).map(|i| (format!("TEE-{i:03}"), i)).collect();
    let known = sim.add_listings(&items);
    let mut expected: HashMap<String, i64> = items.iter().cloned().collect();
    for (sku, quantity) in [("TEE-003", 70), ("TEE-017", 0), ("TEE-039", 5)] {
        edit(&sim, sku, quantity).await;
        expected.insert(sku.into(), quantity);
    }
    // Created on the channel, never given to stockd.
    sim.add_listings(&[("STRAY-1".into(), 9)]);
    let connector = shopify_connector(&sim, version);
    assert_eq!(connector.bulk_read_from(), Some(1000));
    let before = sim.stats().requests;

    let (read, progress) = read_all(&connector).await;
    let read = read.expect("bulk read");

    assert_shows(&connector, &read, &known, &expected, &[("STRAY-1", 9)]);
    assert_eq!(progress, 41);
    // One run, at least one poll, one download (the download goes to the
    // file's storage URL, not the Admin API).
    let api = sim.stats().requests - before;
    assert_eq!(read.channel_requests, api + 1, "{read:?}");
    assert!(
        (3..=40).contains(&read.channel_requests),
        "{}",
        read.channel_requests
    );
    assert_eq!(sim.stats().rate_limit_violations, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_bulk_read_2025_01_grouped() {
    shopify_read_finds_edits_and_unknown_listings("2025-01", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_bulk_read_2026_01_ungrouped_with_escaped_slashes() {
    shopify_read_finds_edits_and_unknown_listings("2026-01", true).await;
}

async fn graphql(sim: &RunningSim, version: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/admin/api/{version}/graphql.json", sim.base_url))
        .header(
            "x-shopify-access-token",
            stockd_sim::shopify::Config::default().access_token,
        )
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

const RUN: &str = "mutation Run($query: String!) { bulkOperationRunQuery(query: $query) { \
     bulkOperation { id status } userErrors { field message code } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bulk_query_at_a_time_and_a_read_follows_its_own() {
    let sim = shopify_sim(stockd_sim::shopify::Config {
        bulk_start_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let known = sim.add_listings(&[("A".into(), 3), ("B".into(), 4)]);
    let other = "{ productVariants { edges { node { id sku } } } }";

    // Someone else's bulk query holds the slot: a second one is refused.
    let first = graphql(&sim, "2025-01", RUN, json!({ "query": other })).await;
    let id = first["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
        .as_str()
        .expect("started")
        .to_string();
    assert_eq!(
        first["data"]["bulkOperationRunQuery"]["bulkOperation"]["status"],
        "CREATED"
    );
    let second = graphql(&sim, "2025-01", RUN, json!({ "query": other })).await;
    let payload = &second["data"]["bulkOperationRunQuery"];
    assert_eq!(payload["bulkOperation"], Value::Null);
    assert_eq!(
        payload["userErrors"],
        json!([{
            "field": null,
            "message": format!("A bulk query operation for this app and shop is already in progress: {id}."),
            "code": "OPERATION_IN_PROGRESS",
        }])
    );
    assert_eq!(second["extensions"]["cost"]["requestedQueryCost"], 10);

    // The connector's read cannot take over someone else's operation.
    let connector = shopify_connector(&sim, "2025-01");
    let (read, _) = read_all(&connector).await;
    let error = read.expect_err("refused while another query runs");
    assert_eq!(error.code, "OPERATION_IN_PROGRESS");
    assert_eq!(error.class, ErrorClass::Retryable);
    assert!(error.retry_after.is_some());

    // Wait for it to finish; its file holds the variants.
    let poll = "query P($id: ID!) { node(id: $id) { ... on BulkOperation { status objectCount rootObjectCount url } } }";
    let mut done = Value::Null;
    for _ in 0..200 {
        done = graphql(&sim, "2025-01", poll, json!({ "id": id })).await;
        if done["data"]["node"]["status"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["data"]["node"]["status"], "COMPLETED", "{done}");
    assert_eq!(done["data"]["node"]["objectCount"], "2");
    let url = done["data"]["node"]["url"].as_str().expect("url");
    let file = reqwest::get(url)
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert_eq!(file.lines().count(), 2);
    assert!(file.contains("\"sku\":\"A\""));
    // A tampered signature is refused by the storage.
    let tampered = url.replace("Signature=", "Signature=0");
    assert_eq!(reqwest::get(tampered).await.expect("sent").status(), 403);

    // stockd's own query already running (a read whose process stopped) is
    // followed rather than refused.
    let own = stockd_channels::shopify::bulk_documents()[3].clone();
    let started = graphql(&sim, "2025-01", RUN, json!({ "query": own })).await;
    assert!(started["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"].is_string());
    edit(&sim, "B", 11).await;
    let (read, _) = read_all(&connector).await;
    let read = read.expect("follows its own operation");
    let expected: HashMap<String, i64> = [("A".to_string(), 3), ("B".to_string(), 11)].into();
    assert_shows(&connector, &read, &known, &expected, &[]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_queries_are_validated_and_failures_classified() {
    let sim = shopify_sim(stockd_sim::shopify::Config {
        bulk_failure: Some("ACCESS_DENIED".into()),
        ..Default::default()
    })
    .await;
    sim.add_listings(&[("A".into(), 1)]);
    let refused = [
        ("{ shop { id } }", "Bulk queries must contain at least one connection."),
        (
            "{ inventoryItems { nodes { id } } }",
            "Selecting via 'nodes' is not supported. Invalid connection fields: 'inventoryItems'.",
        ),
        (
            "{ inventoryItems { edges { node { sku inventoryLevels { edges { node { id } } } } } } }",
            "Connection fields without 'id': inventoryItems.",
        ),
        (
            "mutation { inventoryItemUpdate(id: \"gid://shopify/InventoryItem/1\", input: {}) { userErrors { message } } }",
            "Only `query` operations are supported.",
        ),
        ("{ inventoryItems { edges { node { nope } } } }", "nope"),
    ];
    for (query, message) in refused {
        let v = graphql(&sim, "2025-01", RUN, json!({ "query": query })).await;
        let errors = &v["data"]["bulkOperationRunQuery"]["userErrors"];
        assert_eq!(errors[0]["code"], "INVALID", "{query}: {v}");
        assert_eq!(errors[0]["field"], json!(["query"]));
        let messages: Vec<&str> = errors
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["message"].as_str()).collect())
            .unwrap_or_default();
        assert!(messages.iter().any(|m| m.contains(message)), "{query}: {v}");
    }
    // ACCESS_DENIED fails the operation: permanent for the connector.
    let connector = shopify_connector(&sim, "2025-01");
    let (read, _) = read_all(&connector).await;
    let error = read.expect_err("failed operation");
    assert_eq!(error.code, "ACCESS_DENIED");
    assert_eq!(error.class, ErrorClass::Permanent);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// WooCommerce

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woocommerce_pages_products_and_variations() {
    let sim = stockd_sim::woocommerce::start(Default::default(), any_port())
        .await
        .expect("simulator starts");
    let sim_config = stockd_sim::woocommerce::Config::default();
    // 230 simple products and one variable product with 120 variations:
    // three product pages (231 products) and two variation pages.
    let simple: Vec<(String, i64)> = (0..230).map(|i| (format!("MUG-{i:03}"), i % 17)).collect();
    let mut known = sim.add_listings(&simple);
    let variations: Vec<NewListing> = (0..120)
        .map(|i| NewListing {
            sku: format!("CAP-{i:03}"),
            quantity: 3 + i % 5,
            variation: true,
        })
        .collect();
    known.extend(sim.add_listings_detailed(&variations));
    let mut expected: HashMap<String, i64> = simple.iter().cloned().collect();
    for v in &variations {
        expected.insert(v.sku.clone(), v.quantity);
    }
    for (sku, quantity) in [("MUG-005", 40), ("MUG-229", 0), ("CAP-101", 12)] {
        edit(&sim, sku, quantity).await;
        expected.insert(sku.into(), quantity);
    }
    let stray = sim.add_listings(&[("STRAY-W".into(), 6)]);
    assert_eq!(stray.len(), 1);

    let connector = WooCommerce::new(
        woocommerce::Config {
            site_url: sim.base_url.clone(),
            consumer_key: sim_config.consumer_key.clone(),
            consumer_secret: sim_config.consumer_secret.clone(),
            webhook_secret: sim_config.webhook_secret.clone(),
            rate_limit: None,
            ..Default::default()
        },
        transport(),
    );
    assert_eq!(connector.bulk_read_from(), Some(200));
    let before = sim.stats().requests;
    let (read, progress) = read_all(&connector).await;
    let read = read.expect("paged read");
    assert_shows(&connector, &read, &known, &expected, &[("STRAY-W", 6)]);
    assert_eq!(progress, read.listings.len() as u64);
    // 232 products: 3 pages; 120 variations: 2 pages.
    assert_eq!(read.channel_requests, 5);
    assert_eq!(sim.stats().requests - before, 5);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woocommerce_paging_waits_out_the_hosts_rate_limit() {
    let sim_config = stockd_sim::woocommerce::Config {
        rate_limit: Some((1.0, 20.0)),
        ..Default::default()
    };
    let sim = stockd_sim::woocommerce::start(sim_config.clone(), any_port())
        .await
        .expect("simulator starts");
    let items: Vec<(String, i64)> = (0..450).map(|i| (format!("P-{i:03}"), 1)).collect();
    let known = sim.add_listings(&items);
    let expected: HashMap<String, i64> = items.iter().cloned().collect();
    // The connector is not told the host's limit: 429s are waited out.
    let connector = WooCommerce::new(
        woocommerce::Config {
            site_url: sim.base_url.clone(),
            consumer_key: sim_config.consumer_key.clone(),
            consumer_secret: sim_config.consumer_secret.clone(),
            webhook_secret: sim_config.webhook_secret.clone(),
            rate_limit: None,
            ..Default::default()
        },
        transport(),
    );
    let (read, _) = read_all(&connector).await;
    let read = read.expect("paged read");
    assert_shows(&connector, &read, &known, &expected, &[]);
    let refused = sim.stats().rate_limit_violations;
    assert_eq!(read.channel_requests, 5 + refused);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_operation_offers_partial_data_and_is_retryable() {
    let sim = shopify_sim(stockd_sim::shopify::Config {
        bulk_failure: Some("TIMEOUT".into()),
        ..Default::default()
    })
    .await;
    let items: Vec<(String, i64)> = (0..10).map(|i| (format!("P-{i}"), i)).collect();
    sim.add_listings(&items);
    let connector = shopify_connector(&sim, "2025-01");
    let (read, _) = read_all(&connector).await;
    let error = read.expect_err("failed operation");
    assert_eq!(error.code, "TIMEOUT");
    assert_eq!(error.class, ErrorClass::Retryable);

    let current = graphql(
        &sim,
        "2025-01",
        "{ currentBulkOperation { status errorCode objectCount url partialDataUrl } }",
        json!({}),
    )
    .await;
    let op = &current["data"]["currentBulkOperation"];
    assert_eq!(op["status"], "FAILED", "{current}");
    assert_eq!(op["errorCode"], "TIMEOUT");
    assert_eq!(op["url"], Value::Null);
    // Half of the 20 objects (10 items, 10 levels) were read before the timeout.
    assert_eq!(op["objectCount"], "10");
    let partial = op["partialDataUrl"].as_str().expect("partial data");
    let file = reqwest::get(partial)
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert_eq!(file.lines().count(), 10);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_operation_frees_the_slot() {
    let sim = shopify_sim(stockd_sim::shopify::Config {
        bulk_start_delay: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let known = sim.add_listings(&[("A".into(), 2)]);
    let other = "{ productVariants { edges { node { id sku } } } }";
    let first = graphql(&sim, "2025-01", RUN, json!({ "query": other })).await;
    let id = first["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
        .as_str()
        .expect("started")
        .to_string();
    let cancel = "mutation C($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { id status } userErrors { field message } } }";
    let canceled = graphql(&sim, "2025-01", cancel, json!({ "id": id })).await;
    let payload = &canceled["data"]["bulkOperationCancel"];
    assert_eq!(
        payload["bulkOperation"]["status"], "CANCELING",
        "{canceled}"
    );
    assert_eq!(payload["userErrors"], json!([]));
    let unknown = graphql(
        &sim,
        "2025-01",
        cancel,
        json!({ "id": "gid://shopify/BulkOperation/1" }),
    )
    .await;
    assert_eq!(
        unknown["data"]["bulkOperationCancel"]["userErrors"][0]["field"],
        json!(["id"])
    );
    // Once CANCELED, the connector's read gets the slot.
    let connector = shopify_connector(&sim, "2025-01");
    let mut read = None;
    for _ in 0..100 {
        let (attempt, _) = read_all(&connector).await;
        match attempt {
            Err(e) if e.code == "OPERATION_IN_PROGRESS" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                read = Some(other.expect("read after the cancel"));
                break;
            }
        }
    }
    let read = read.expect("the slot was freed");
    let expected: HashMap<String, i64> = [("A".to_string(), 2)].into();
    assert_shows(&connector, &read, &known, &expected, &[]);
    let poll = "query P($id: ID!) { node(id: $id) { ... on BulkOperation { status } } }";
    let first = graphql(&sim, "2025-01", poll, json!({ "id": id })).await;
    assert_eq!(first["data"]["node"]["status"], "CANCELED");
    sim.shutdown().await;
}
