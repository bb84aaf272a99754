//! Channel refunds end to end: stockd against the WooCommerce simulator,
//! refunds created through the simulator's refunds endpoint (line
//! quantities, with or without restock) arrive as `order.updated` and
//! become returns or releases. And WooCommerce's order poll: an order
//! whose webhooks are lost still reaches the ledger, once.

use crate::helpers::{config, free_port, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stockd_channels::{woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::RunningSim;

const WOO: &str = "woo";
const KEY: &str = "ck_refund_0123456789";
const SECRET: &str = "cs_refund_0123456789";
const HOOK_SECRET: &str = "woo-refund-hook-secret";

struct Setup {
    app: TestApp,
    woo: RunningSim,
}

/// How the shop talks to stockd besides pushes.
#[derive(Clone, Copy)]
struct Options {
    restock_on_refund: bool,
    /// `false`: every webhook is lost (none is configured).
    webhooks: bool,
    order_poll: Option<Duration>,
}

const REFUNDS: Options = Options {
    restock_on_refund: false,
    webhooks: true,
    order_poll: None,
};

async fn start(skus: &[&str], restock_on_refund: bool) -> Setup {
    start_with(
        skus,
        Options {
            restock_on_refund,
            ..REFUNDS
        },
    )
    .await
}

/// The simulator, stockd wired to it as `options` say, one location and
/// `skus` listed with 10 units each, shown on the channel.
async fn start_with(skus: &[&str], options: Options) -> Setup {
    let port = free_port();
    let woo = stockd_sim::woocommerce::start(
        stockd_sim::woocommerce::Config {
            consumer_key: KEY.into(),
            consumer_secret: SECRET.into(),
            webhook_secret: HOOK_SECRET.into(),
            webhook_url: options
                .webhooks
                .then(|| format!("http://127.0.0.1:{port}/v1/webhooks/woocommerce/{WOO}")),
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("woocommerce simulator");
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(sqlite_url(&dir));
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], port));
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(5)).expect("http client"));
    let channel = ChannelId::parse(WOO.to_string()).expect("id");
    cfg.extra_connections = vec![stockd::outbound::dispatch::Connection {
        channel: channel.clone(),
        connector: Arc::new(woocommerce::WooCommerce::new(
            woocommerce::Config {
                site_url: woo.base_url.clone(),
                consumer_key: KEY.into(),
                consumer_secret: SECRET.into(),
                webhook_secret: HOOK_SECRET.into(),
                rate_limit: None,
                order_poll_interval: options.order_poll,
                ..Default::default()
            },
            transport,
        )),
    }];
    if options.restock_on_refund {
        cfg.restock_on_refund = BTreeSet::from([channel]);
    }
    let app = TestApp::start(cfg, dir).await;
    app.location("AMS", true, 1).await;
    app.variants(skus).await;
    app.put(
        &format!("/v1/channels/{WOO}"),
        json!({"kind": "woocommerce"}),
    )
    .await
    .expect(200);
    let items: Vec<(String, i64)> = skus.iter().map(|s| (s.to_string(), 0)).collect();
    let listings: Vec<Value> = woo
        .add_listings(&items)
        .into_iter()
        .map(|l| json!({"sku": l.sku, "external": l.external}))
        .collect();
    app.post(
        &format!("/v1/channels/{WOO}/listings"),
        Value::Array(listings),
    )
    .await
    .expect(200);
    for sku in skus {
        app.events(receipt(&format!("r-{sku}"), sku, "AMS", 10))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !skus.iter().all(|sku| {
        woo.listings()
            .iter()
            .any(|l| l.sku == *sku && l.quantity == 10)
    }) {
        assert!(
            Instant::now() < deadline,
            "the channel never showed the stock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup { app, woo }
}

/// The order cancelled in the shop's back office.
async fn cancel_in_back_office(woo: &RunningSim, order: &str) {
    woo_call(
        woo,
        "PUT",
        &format!("/orders/{order}"),
        Some(json!({"status": "cancelled"})),
    )
    .await;
}

/// `sku` has its 10 units on hand and nothing reserved.
async fn assert_all_released(app: &TestApp, sku: &str) {
    let stock = app.stock(sku).await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(10), Some(0)),
        "{stock}"
    );
}

/// The ledger's entries for `order`, by type, in order.
async fn order_entries(app: &TestApp, order: &str) -> Vec<String> {
    let ledger = app.get("/v1/ledger?limit=100").await.expect(200).body;
    ledger["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["event"]["order_id"] == order)
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect()
}

/// A signed call to the simulator's REST API (OAuth 1.0a over http).
async fn woo_call(woo: &RunningSim, method: &str, path: &str, body: Option<Value>) -> Value {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = format!("{}{}{path}", woo.base_url, woocommerce::API_PREFIX);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let nonce = format!(
        "testnonce{now}x{}",
        NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let params = woocommerce::oauth_sign(method, &base, &[], KEY, SECRET, now, &nonce);
    let query = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                stockd_channels::encoding::percent_encode(k),
                stockd_channels::encoding::percent_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().expect("method"), format!("{base}?{query}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("simulator answers");
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

/// The simulator's line id of the order's only line.
async fn line_of(woo: &RunningSim, order_id: &str) -> u64 {
    let order = woo_call(woo, "GET", &format!("/orders/{order_id}"), None).await;
    order["line_items"][0]["id"].as_u64().expect("line id")
}

async fn refund(woo: &RunningSim, order_id: &str, qty: i64, restock: bool) {
    let line = line_of(woo, order_id).await;
    woo_call(
        woo,
        "POST",
        &format!("/orders/{order_id}/refunds"),
        Some(json!({"line_items": [{"id": line, "quantity": qty}], "api_restock": restock})),
    )
    .await;
}

#[tokio::test]
async fn a_woocommerce_partial_refund_returns_restocked_shipped_units_and_releases_unshipped_ones()
{
    let s = start(&["WREF-1", "WREF-2"], false).await;
    // Shipped, then 2 of 3 refunded with restock: a return pending the
    // warehouse, keyed by the channel's refund.
    let shipped = s.woo.buy(&[("WREF-1".to_string(), 3)]).await.unwrap();
    s.app
        .stock_when("WREF-1", "reserved", |v| v["reserved"] == 3)
        .await;
    s.app
        .events(json!({"key": "ship-1", "type": "ship", "channel": WOO, "order_id": shipped}))
        .await;
    refund(&s.woo, &shipped, 2, true).await;
    let stock = s
        .app
        .stock_when("WREF-1", "pending return", |v| v["pending_return"] == 2)
        .await;
    assert_eq!(stock["on_hand"], 7, "{stock}");
    let open = s.app.get("/v1/returns?status=open").await.expect(200).body;
    let rma = open["items"][0]["rma_id"].as_str().unwrap_or_default();
    assert!(
        rma.starts_with(&format!("{WOO}:{shipped}:refund:")) && rma.ends_with(":restock"),
        "{open}"
    );
    // Not shipped, 1 of 2 refunded without restock: that unit is released,
    // nothing comes back.
    let open_order = s.woo.buy(&[("WREF-2".to_string(), 2)]).await.unwrap();
    s.app
        .stock_when("WREF-2", "reserved", |v| v["reserved"] == 2)
        .await;
    refund(&s.woo, &open_order, 1, false).await;
    let stock = s
        .app
        .stock_when("WREF-2", "released", |v| v["reserved"] == 1)
        .await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["pending_return"].as_i64()),
        (Some(10), Some(0)),
        "{stock}"
    );
    // Each later notification of the order names every refund again: none
    // applies twice.
    refund(&s.woo, &open_order, 1, false).await;
    let stock = s
        .app
        .stock_when("WREF-2", "all released", |v| v["reserved"] == 0)
        .await;
    assert_eq!(stock["on_hand"], 10, "{stock}");
    let stock = s.app.stock("WREF-1").await;
    assert_eq!(stock["pending_return"], 2, "{stock}");
    s.app.stop().await;
    s.woo.shutdown().await;
}

#[tokio::test]
async fn restock_on_refund_verifies_a_woocommerce_return_at_once() {
    let s = start(&["WREF-3"], true).await;
    let shipped = s.woo.buy(&[("WREF-3".to_string(), 3)]).await.unwrap();
    s.app
        .stock_when("WREF-3", "reserved", |v| v["reserved"] == 3)
        .await;
    s.app
        .events(json!({"key": "ship-3", "type": "ship", "channel": WOO, "order_id": shipped}))
        .await;
    refund(&s.woo, &shipped, 2, true).await;
    // Back on hand and sellable, nothing pending for the warehouse.
    let stock = s
        .app
        .stock_when("WREF-3", "verified", |v| v["on_hand"] == 9)
        .await;
    assert_eq!(stock["pending_return"], 0, "{stock}");
    let open = s.app.get("/v1/returns?status=open").await.expect(200).body;
    assert_eq!(open["items"].as_array().map(Vec::len), Some(0), "{open}");
    s.app.stop().await;
    s.woo.shutdown().await;
}

#[tokio::test]
async fn an_order_whose_webhooks_are_lost_reaches_the_ledger_by_the_order_poll() {
    let s = start_with(
        &["WPOLL-1"],
        Options {
            webhooks: false,
            order_poll: Some(Duration::from_millis(200)),
            ..REFUNDS
        },
    )
    .await;
    let order = s.woo.buy(&[("WPOLL-1".to_string(), 3)]).await.unwrap();
    s.app
        .stock_when("WPOLL-1", "reserved by the poll", |v| v["reserved"] == 3)
        .await;
    // Cancelled in the shop's back office: read back the same way.
    cancel_in_back_office(&s.woo, &order).await;
    s.app
        .stock_when("WPOLL-1", "released by the poll", |v| v["reserved"] == 0)
        .await;
    // Every poll reads the last minute again: nothing applies twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_all_released(&s.app, "WPOLL-1").await;
    s.app.stop().await;
    s.woo.shutdown().await;
}

#[tokio::test]
async fn an_order_placed_and_cancelled_between_two_polls_reaches_the_ledger_placed_then_cancelled()
{
    let s = start_with(
        &["WPOLL-3"],
        Options {
            webhooks: false,
            order_poll: Some(Duration::from_secs(2)),
            ..REFUNDS
        },
    )
    .await;
    // Bought (paid) and cancelled at once: the next poll reads the order
    // only as cancelled.
    let order = s.woo.buy(&[("WPOLL-3".to_string(), 3)]).await.unwrap();
    cancel_in_back_office(&s.woo, &order).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let types = loop {
        let types = order_entries(&s.app, &order).await;
        if types.len() >= 2 || Instant::now() > deadline {
            break types;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(types, ["order", "cancel"], "order {order}");
    // Later polls read it again: nothing applies twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_all_released(&s.app, "WPOLL-3").await;
    assert_eq!(order_entries(&s.app, &order).await, ["order", "cancel"]);
    s.app.stop().await;
    s.woo.shutdown().await;
}

#[tokio::test]
async fn an_order_both_notified_and_polled_applies_once() {
    let s = start_with(
        &["WPOLL-2"],
        Options {
            order_poll: Some(Duration::from_millis(200)),
            ..REFUNDS
        },
    )
    .await;
    s.woo.buy(&[("WPOLL-2".to_string(), 2)]).await.unwrap();
    s.app
        .stock_when("WPOLL-2", "reserved", |v| v["reserved"] == 2)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let orders = s.app.get("/v1/ledger?limit=100").await.expect(200).body;
    let placed = orders["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["type"] == "order")
        .count();
    assert_eq!(placed, 1, "{orders}");
    assert_eq!(s.app.stock("WPOLL-2").await["reserved"], 2);
    s.app.stop().await;
    s.woo.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_kit_order_is_shown_as_stockd_wants_not_as_the_shop_restocked_it() {
    // WooCommerce restocks a cancelled order's products on its own and its
    // cancel names no lines: stockd must forget what it believes the shop
    // shows of the kit it sold (not only of the components it released).
    let s = start(&["KC-A", "KC-B"], false).await;
    s.app.variants(&["KC-KIT"]).await;
    s.app
        .put(
            "/v1/bundles/KC-KIT",
            json!({"components": [{"sku": "KC-A", "qty": 4}, {"sku": "KC-B", "qty": 1}]}),
        )
        .await
        .expect(200);
    let listings: Vec<Value> = s
        .woo
        .add_listings(&[("KC-KIT".to_string(), 0)])
        .into_iter()
        .map(|l| json!({"sku": l.sku, "external": l.external}))
        .collect();
    s.app
        .post(
            &format!("/v1/channels/{WOO}/listings"),
            Value::Array(listings),
        )
        .await
        .expect(200);
    let shown = |sku: &str| {
        s.woo
            .listings()
            .iter()
            .find(|l| l.sku == sku)
            .map(|l| l.quantity)
    };
    let wait_shown = |sku: &'static str, want: i64| async move {
        let deadline = Instant::now() + Duration::from_secs(15);
        while shown(sku) != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{sku} never showed {want}: {:?}",
                shown(sku)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // 10 A and 10 B make 2 kits.
    wait_shown("KC-KIT", 2).await;
    let order = s.woo.buy(&[("KC-KIT".to_string(), 2)]).await.unwrap();
    s.app
        .stock_when("KC-A", "the kits reserved", |v| v["reserved"] == 8)
        .await;
    // A count finds most of A gone: after the cancel no kit can be made.
    s.app
        .events(json!([{"key": "count-kc-a", "type": "count", "sku": "KC-A",
                         "location": "AMS", "on_hand": 3}]))
        .await;
    cancel_in_back_office(&s.woo, &order).await;
    s.app
        .stock_when("KC-A", "released by the cancel", |v| v["reserved"] == 0)
        .await;
    // The shop put the 2 kits back on sale; stockd takes them off again.
    wait_shown("KC-KIT", 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shown("KC-KIT"), Some(0));
    s.app.stop().await;
    s.woo.shutdown().await;
}
