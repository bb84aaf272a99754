//! Channel order lines that map to no listing are kept, not dropped: the
//! webhook answers `quarantined`, `GET /v1/channels/{id}/unmapped` lists
//! them, and creating the listing applies them once.

use crate::helpers::{config, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::{shopify, ReqwestTransport, Transport};
use stockd_core::ChannelId;

const SHOP: &str = "shop";
const SECRET: &str = "shop-unmapped-hook-secret";

/// A server with a Shopify channel (its API is never reached here), one
/// location and `skus` with 10 units each, none of them listed yet.
async fn start(skus: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("dir");
    let app = serve(sqlite_url(&dir), dir).await;
    setup(&app, skus).await;
    app
}

/// A server on `database_url` with the Shopify channel's connector.
async fn serve(database_url: String, dir: tempfile::TempDir) -> TestApp {
    let mut cfg = config(database_url);
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(1)).expect("http client"));
    cfg.extra_connections = vec![stockd::outbound::dispatch::Connection {
        channel: ChannelId::parse(SHOP.to_string()).expect("id"),
        connector: Arc::new(shopify::Shopify::new(
            shopify::Config {
                shop_url: "http://127.0.0.1:9".into(),
                access_token: "token".into(),
                webhook_secret: SECRET.into(),
                ..Default::default()
            },
            transport,
        )),
    }];
    TestApp::start(cfg, dir).await
}

async fn setup(app: &TestApp, skus: &[&str]) {
    app.location("AMS", true, 1).await;
    app.variants(skus).await;
    app.put(&format!("/v1/channels/{SHOP}"), json!({"kind": "shopify"}))
        .await
        .expect(200);
    for sku in skus {
        app.events(receipt(&format!("r-{sku}"), sku, "AMS", 10))
            .await;
    }
}

fn variant_gid(variant: u64) -> String {
    format!("gid://shopify/ProductVariant/{variant}")
}

/// Delivers a signed `orders/create` of `(line id, variant id, qty)` lines;
/// returns the receipt's status.
async fn order_created(app: &TestApp, order_id: u64, lines: &[(u64, u64, i64)]) -> String {
    let items: Vec<Value> = lines
        .iter()
        .map(|(id, variant, qty)| json!({"id": id, "variant_id": variant, "quantity": qty}))
        .collect();
    let body = json!({"id": order_id, "line_items": items});
    deliver(app, "orders/create", body).await
}

/// Delivers a signed `refunds/create` restocking `(line id, variant id, qty)`
/// lines of `order_id`; returns the receipt's status.
async fn refund_created(
    app: &TestApp,
    refund_id: u64,
    order_id: u64,
    lines: &[(u64, u64, i64)],
) -> String {
    let items: Vec<Value> = lines
        .iter()
        .map(|(id, variant, qty)| {
            json!({"line_item_id": id, "quantity": qty, "restock_type": "cancel",
                "line_item": {"id": id, "variant_id": variant}})
        })
        .collect();
    let body = json!({"id": refund_id, "order_id": order_id, "refund_line_items": items});
    deliver(app, "refunds/create", body).await
}

async fn deliver(app: &TestApp, topic: &str, body: Value) -> String {
    let body = body.to_string();
    // Shopify signs as WooCommerce does: base64 HMAC-SHA256 of the raw body.
    let signature = stockd_channels::woocommerce::webhook_signature(SECRET, body.as_bytes());
    let reply = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/shopify/{SHOP}", app.base))
        .header("content-type", "application/json")
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-topic", topic)
        .body(body)
        .send()
        .await
        .expect("webhook sent");
    assert_eq!(reply.status().as_u16(), 200);
    let receipt: Value = reply.json().await.expect("receipt");
    receipt["status"].as_str().expect("status").to_string()
}

async fn list(app: &TestApp, sku: &str, variant: u64) {
    app.post(
        &format!("/v1/channels/{SHOP}/listings"),
        json!([{"sku": sku, "external": {"variant_id": variant_gid(variant)}}]),
    )
    .await
    .expect(200);
}

async fn unmapped(app: &TestApp) -> Vec<Value> {
    let page = app
        .get(&format!("/v1/channels/{SHOP}/unmapped"))
        .await
        .expect(200)
        .body;
    page["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn an_order_for_an_unlisted_item_waits_for_its_listing_and_applies_once() {
    let app = start(&["UNM-1"]).await;
    assert_eq!(
        order_created(&app, 5001, &[(1, 71, 3)]).await,
        "quarantined"
    );
    // A redelivery while it waits is kept once.
    assert_eq!(
        order_created(&app, 5001, &[(1, 71, 3)]).await,
        "quarantined"
    );
    let kept = unmapped(&app).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["channel"], SHOP);
    assert_eq!(kept[0]["order_id"], "5001");
    assert_eq!(kept[0]["kind"], "placed");
    assert_eq!(kept[0]["dedup_key"], "orders/create:5001");
    assert_eq!(
        kept[0]["item_keys"],
        json!([[["variant_id", variant_gid(71)]]])
    );
    assert_eq!(app.stock("UNM-1").await["reserved"], 0);

    list(&app, "UNM-1", 71).await;
    let stock = app.stock("UNM-1").await;
    assert_eq!(stock["reserved"], 3, "{stock}");
    assert_eq!(stock["on_hand"], 10, "{stock}");
    assert!(unmapped(&app).await.is_empty());

    // The channel delivers it again, and the listing is upserted again:
    // applied once.
    assert_eq!(order_created(&app, 5001, &[(1, 71, 3)]).await, "duplicate");
    list(&app, "UNM-1", 71).await;
    assert_eq!(app.stock("UNM-1").await["reserved"], 3);
    let ledger = app.get("/v1/ledger?sku=UNM-1").await.expect(200).body;
    let orders = ledger["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|row| row["type"] == "order")
        .count();
    assert_eq!(orders, 1, "{ledger}");
    app.stop().await;
}

#[tokio::test]
async fn the_unlisted_lines_of_an_order_wait_while_its_listed_lines_apply() {
    let app = start(&["UNM-2", "UNM-3"]).await;
    list(&app, "UNM-2", 72).await;
    assert_eq!(
        order_created(&app, 5002, &[(1, 72, 1), (2, 73, 2)]).await,
        "applied"
    );
    assert_eq!(app.stock("UNM-2").await["reserved"], 1);
    let kept = unmapped(&app).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["dedup_key"], "orders/create:5002:unmapped");
    assert_eq!(
        kept[0]["item_keys"],
        json!([[["variant_id", variant_gid(73)]]])
    );

    list(&app, "UNM-3", 73).await;
    assert_eq!(app.stock("UNM-3").await["reserved"], 2);
    assert_eq!(app.stock("UNM-2").await["reserved"], 1);
    assert!(unmapped(&app).await.is_empty());
    let order = app.get("/v1/ledger?sku=UNM-3").await.expect(200).body;
    assert!(order["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|row| row["type"] == "order"));
    app.stop().await;
}

#[tokio::test]
async fn a_refund_of_an_unlisted_line_waits_with_its_order_and_applies_after_it() {
    let app = start(&["UNM-4", "UNM-5", "UNM-6"]).await;
    // A whole order unlisted, then refunded: both wait, in that order.
    assert_eq!(
        order_created(&app, 5003, &[(1, 74, 2)]).await,
        "quarantined"
    );
    assert_eq!(
        refund_created(&app, 9003, 5003, &[(1, 74, 1)]).await,
        "quarantined"
    );
    // A known order whose refunded line was the unlisted one.
    list(&app, "UNM-5", 75).await;
    assert_eq!(
        order_created(&app, 5004, &[(1, 75, 1), (2, 76, 3)]).await,
        "applied"
    );
    assert_eq!(
        refund_created(&app, 9004, 5004, &[(2, 76, 2)]).await,
        "quarantined"
    );
    let kinds: Vec<Value> = unmapped(&app)
        .await
        .iter()
        .map(|row| row["kind"].clone())
        .collect();
    assert_eq!(kinds, ["placed", "restocked", "placed", "restocked"]);

    list(&app, "UNM-4", 74).await;
    assert_eq!(app.stock("UNM-4").await["reserved"], 1);
    list(&app, "UNM-6", 76).await;
    assert_eq!(app.stock("UNM-6").await["reserved"], 1);
    assert_eq!(app.stock("UNM-5").await["reserved"], 1);
    assert!(unmapped(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn listings_imported_while_the_server_was_down_apply_kept_lines_at_start() {
    let db = tempfile::tempdir().expect("dir");
    let url = sqlite_url(&db);
    let app = serve(url.clone(), tempfile::tempdir().expect("dir")).await;
    setup(&app, &["UNM-7"]).await;
    assert_eq!(
        order_created(&app, 5007, &[(1, 77, 4)]).await,
        "quarantined"
    );
    app.stop().await;

    // `stockd import listings --database …` writes listings straight to the store.
    let store = stockd_store::open(&url).await.expect("store");
    let mut external = serde_json::Map::new();
    external.insert("variant_id".into(), Value::String(variant_gid(77)));
    store
        .upsert_listings(vec![stockd_store::ListingRecord {
            channel: ChannelId::parse(SHOP.to_string()).expect("id"),
            sku: stockd_core::Sku::parse("UNM-7".to_string()).expect("sku"),
            external,
            rank: None,
        }])
        .await
        .expect("listing stored");
    store.close().await;

    let app = serve(url, tempfile::tempdir().expect("dir")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.stock("UNM-7").await["reserved"] != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the kept order never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unmapped(&app).await.is_empty());
    app.stop().await;
    drop(db);
}

#[tokio::test]
async fn the_unmapped_list_of_an_unknown_channel_is_a_404() {
    let app = start(&[]).await;
    app.get("/v1/channels/nowhere/unmapped")
        .await
        .expect_error(404, "unknown_channel");
    app.get(&format!("/v1/channels/{SHOP}/unmapped?limit=0"))
        .await
        .expect_error(400, "invalid_query");
    app.stop().await;
}
