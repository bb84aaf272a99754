//! Shopify's order poll end to end: a shop whose webhooks never reach
//! stockd (none is configured) still has every order, cancellation and
//! restocking refund applied, once, read back through the `orders` query.
//! (WooCommerce's poll is tested beside its refunds, in `refunds.rs`.)

use crate::helpers::{config, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_channels::{shopify, ReqwestTransport, Transport};
use stockd_core::ChannelId;

const SHOP: &str = "shop";
const TOKEN: &str = "shpat_poll_token";
const SECRET: &str = "shpss_poll_secret";

#[tokio::test]
async fn a_shop_whose_webhooks_are_lost_is_read_back_by_the_order_poll() {
    let sim = stockd_sim::shopify::start(
        stockd_sim::shopify::Config {
            access_token: TOKEN.into(),
            webhook_secret: SECRET.into(),
            webhook_url: None,
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("shopify simulator");
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(sqlite_url(&dir));
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(5)).expect("http client"));
    cfg.extra_connections = vec![stockd::outbound::dispatch::Connection {
        channel: ChannelId::parse(SHOP.to_string()).expect("id"),
        connector: Arc::new(shopify::Shopify::new(
            shopify::Config {
                shop_url: sim.base_url.clone(),
                access_token: TOKEN.into(),
                webhook_secret: SECRET.into(),
                order_poll_interval: Some(Duration::from_millis(200)),
                ..Default::default()
            },
            transport,
        )),
    }];
    let app = TestApp::start(cfg, dir).await;
    app.location("AMS", true, 1).await;
    app.variants(&["SPOLL-1"]).await;
    app.put(&format!("/v1/channels/{SHOP}"), json!({"kind": "shopify"}))
        .await
        .expect(200);
    let listings: Vec<Value> = sim
        .add_listings(&[("SPOLL-1".to_string(), 0)])
        .into_iter()
        .map(|l| json!({"sku": l.sku, "external": l.external}))
        .collect();
    app.post(
        &format!("/v1/channels/{SHOP}/listings"),
        Value::Array(listings),
    )
    .await
    .expect(200);
    app.events(receipt("r-1", "SPOLL-1", "AMS", 10)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sim.listings().iter().any(|l| l.quantity == 10) {
        assert!(Instant::now() < deadline, "the shop never showed the stock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Placed, then cancelled in the shop's admin.
    let cancelled = sim.buy(&[("SPOLL-1".to_string(), 3)]).await.unwrap();
    app.stock_when("SPOLL-1", "placed", |v| v["reserved"] == 3)
        .await;
    sim.cancel_order(&cancelled).await.unwrap();
    app.stock_when("SPOLL-1", "cancelled", |v| v["reserved"] == 0)
        .await;
    // Placed, then refunded with restock before it shipped: released.
    let refunded = sim.buy(&[("SPOLL-1".to_string(), 2)]).await.unwrap();
    app.stock_when("SPOLL-1", "placed", |v| v["reserved"] == 2)
        .await;
    sim.refund_order(&refunded, true).await.unwrap();
    app.stock_when("SPOLL-1", "refunded", |v| v["reserved"] == 0)
        .await;
    // Later polls read the same orders again: nothing applies twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stock = app.stock("SPOLL-1").await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(10), Some(0)),
        "{stock}"
    );
    let ledger = app.get("/v1/ledger?limit=100").await.expect(200).body;
    let orders = ledger["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["type"] == "order")
        .count();
    assert_eq!(orders, 2, "{ledger}");
    app.stop().await;
    sim.shutdown().await;
}
