//! bol.com returns end to end: stockd polls the bol simulator's orders and
//! returns; a customer's return of shipped units, registered on the
//! simulator, becomes a return under the RMA `bol:return:{rmaId}` — pending
//! the warehouse, or back on hand at once with `restock_on_refund` — and
//! later polls that list it again change nothing.

use crate::helpers::{config, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_channels::bol::{self, RateLimit, RateLimits};
use stockd_channels::{ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::RunningSim;

const BOL: &str = "bol";
const CLIENT: &str = "bol-return-client";
const SECRET: &str = "bol-return-secret";

struct Setup {
    app: TestApp,
    bol: RunningSim,
}

/// The simulator (without rate limits, so polls can be quick), stockd
/// polling it every 100 ms, one location and `sku` listed with 10 units,
/// shown on the channel.
async fn start(sku: &str, restock_on_refund: bool) -> Setup {
    let sim = stockd_sim::bol::start(
        stockd_sim::bol::Config {
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            rate_limits: Vec::new(),
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("bol simulator");
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(sqlite_url(&dir));
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(5)).expect("http client"));
    let channel = ChannelId::parse(BOL.to_string()).expect("id");
    cfg.extra_connections = vec![stockd::outbound::dispatch::Connection {
        channel: channel.clone(),
        connector: Arc::new(bol::Bol::new(
            bol::Config {
                api_url: sim.base_url.clone(),
                login_url: sim.base_url.clone(),
                client_id: CLIENT.into(),
                client_secret: SECRET.into(),
                process_poll_interval: Duration::from_millis(50),
                order_poll_interval: Duration::from_millis(100),
                rate_limits: RateLimits {
                    orders_list: RateLimit::per_second(100),
                    returns_list: RateLimit::per_second(100),
                    ..RateLimits::default()
                },
                ..Default::default()
            },
            transport,
        )),
    }];
    if restock_on_refund {
        cfg.restock_on_refund = BTreeSet::from([channel]);
    }
    let app = TestApp::start(cfg, dir).await;
    app.location("AMS", true, 1).await;
    app.variants(&[sku]).await;
    app.put(&format!("/v1/channels/{BOL}"), json!({"kind": "bol"}))
        .await
        .expect(200);
    let listings: Vec<Value> = sim
        .add_listings(&[(sku.to_string(), 0)])
        .into_iter()
        .map(|l| json!({"sku": l.sku, "external": l.external}))
        .collect();
    app.post(
        &format!("/v1/channels/{BOL}/listings"),
        Value::Array(listings),
    )
    .await
    .expect(200);
    app.events(receipt(&format!("r-{sku}"), sku, "AMS", 10))
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sim
        .listings()
        .iter()
        .any(|l| l.sku == sku && l.quantity == 10)
    {
        assert!(
            Instant::now() < deadline,
            "the channel never showed the stock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup { app, bol: sim }
}

/// A `/_sim` operator call; its JSON answer.
async fn operate(bol: &RunningSim, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", bol.base_url))
        .json(&body)
        .send()
        .await
        .expect("simulator answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

async fn wait_for(app: &TestApp, sku: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stock = app.stock(sku).await;
        if check(&stock) {
            return stock;
        }
        assert!(Instant::now() < deadline, "{what}: {stock}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until the simulator has answered `more` further API requests (several
/// polls, each listing orders and returns).
async fn wait_for_polls(bol: &RunningSim, more: u64) {
    let target = bol.stats().requests + more;
    let deadline = Instant::now() + Duration::from_secs(15);
    while bol.stats().requests < target {
        assert!(Instant::now() < deadline, "stockd stopped polling");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A customer buys 3 units, stockd and bol ship them, the customer returns
/// 2: the RMA of the registered return item.
async fn buy_ship_and_return(s: &Setup, sku: &str) -> String {
    let bought = operate(&s.bol, "/_sim/orders", json!({"sku": sku, "qty": 3})).await;
    let order = bought["order_id"].as_str().expect("order id").to_string();
    let item = bought["order_item_ids"][0]
        .as_str()
        .expect("order item id")
        .to_string();
    wait_for(&s.app, sku, "reserved", |v| v["reserved"] == 3).await;
    s.app
        .events(json!({"key": format!("ship-{order}"), "type": "ship",
                       "channel": BOL, "order_id": order}))
        .await;
    operate(&s.bol, &format!("/_sim/bol/orders/{order}/ship"), json!({})).await;
    let registered = operate(
        &s.bol,
        "/_sim/bol/returns",
        json!({"order_item_id": item, "quantity": 2}),
    )
    .await;
    registered["rma_id"].as_str().expect("rma id").to_string()
}

#[tokio::test]
async fn a_bol_return_of_shipped_units_is_pending_once_however_often_it_is_polled() {
    let s = start("BRET-1", false).await;
    let rma = buy_ship_and_return(&s, "BRET-1").await;
    let stock = wait_for(&s.app, "BRET-1", "pending return", |v| {
        v["pending_return"] == 2
    })
    .await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(7), Some(0)),
        "{stock}"
    );
    let open = s.app.get("/v1/returns?status=open").await.expect(200).body;
    let rmas: Vec<&str> = open["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["rma_id"].as_str())
        .collect();
    assert_eq!(rmas, vec![format!("{BOL}:return:{rma}")], "{open}");
    // bol lists the unhandled return on every poll: nothing applies twice.
    wait_for_polls(&s.bol, 12).await;
    assert_eq!(s.app.stock("BRET-1").await, stock);
    let again = s.app.get("/v1/returns?status=open").await.expect(200).body;
    assert_eq!(again, open);
    s.app.stop().await;
    s.bol.shutdown().await;
}

#[tokio::test]
async fn restock_on_refund_puts_a_bol_return_back_on_hand_once() {
    let s = start("BRET-2", true).await;
    buy_ship_and_return(&s, "BRET-2").await;
    let stock = wait_for(&s.app, "BRET-2", "back on hand", |v| v["on_hand"] == 9).await;
    assert_eq!(stock["pending_return"], 0, "{stock}");
    wait_for_polls(&s.bol, 12).await;
    assert_eq!(s.app.stock("BRET-2").await, stock);
    s.app.stop().await;
    s.bol.shutdown().await;
}
