//! End-to-end sync: stockd with its dispatcher and webhooks against the
//! channel simulators (in process, on loopback). Each test waits for
//! convergence — every listing on every simulated channel shows what stockd
//! computed — with a deadline, never a fixed sleep.

use crate::helpers::{config, free_port, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_channels::{shopify, woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::{Faults, RunningSim};

const SHOP: &str = "shop";
const WOO: &str = "woo";
const SHOP_TOKEN: &str = "shpat_test";
const SHOP_SECRET: &str = "shop-app-secret";
const WOO_KEY: &str = "ck_test_0123456789";
const WOO_SECRET: &str = "cs_test_0123456789";
const WOO_HOOK_SECRET: &str = "woo-hook-secret";

struct Harness {
    app: Option<TestApp>,
    shop: RunningSim,
    woo: RunningSim,
    port: u16,
    dir_url: String,
    /// Failed attempts before an update is dead-lettered.
    max_attempts: u32,
    /// Wait before listings dead-lettered by an outage are sent again.
    revive_after: Duration,
    /// Holds the database across restarts.
    _dir: tempfile::TempDir,
}

fn connections(shop: &RunningSim, woo: &RunningSim) -> Vec<stockd::outbound::dispatch::Connection> {
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(5)).expect("http client"));
    vec![
        stockd::outbound::dispatch::Connection {
            channel: ChannelId::parse(SHOP.to_string()).expect("id"),
            connector: Arc::new(shopify::Shopify::new(
                shopify::Config {
                    shop_url: shop.base_url.clone(),
                    access_token: SHOP_TOKEN.into(),
                    webhook_secret: SHOP_SECRET.into(),
                    ..Default::default()
                },
                transport.clone(),
            )),
        },
        stockd::outbound::dispatch::Connection {
            channel: ChannelId::parse(WOO.to_string()).expect("id"),
            connector: Arc::new(woocommerce::WooCommerce::new(
                woocommerce::Config {
                    site_url: woo.base_url.clone(),
                    consumer_key: WOO_KEY.into(),
                    consumer_secret: WOO_SECRET.into(),
                    webhook_secret: WOO_HOOK_SECRET.into(),
                    rate_limit: None,
                    ..Default::default()
                },
                transport,
            )),
        },
    ]
}

impl Harness {
    /// Simulators, a server on SQLite wired to them, one location, `skus`
    /// listed on both channels with no stock.
    async fn start(skus: &[&str]) -> Harness {
        let port = free_port();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let shop = stockd_sim::shopify::start(
            stockd_sim::shopify::Config {
                access_token: SHOP_TOKEN.into(),
                webhook_secret: SHOP_SECRET.into(),
                webhook_url: Some(format!(
                    "http://127.0.0.1:{port}/v1/webhooks/shopify/{SHOP}"
                )),
                webhook_retry_delays: vec![Duration::from_millis(300); 8],
                ..Default::default()
            },
            any,
        )
        .await
        .expect("shopify simulator");
        let woo = stockd_sim::woocommerce::start(
            stockd_sim::woocommerce::Config {
                consumer_key: WOO_KEY.into(),
                consumer_secret: WOO_SECRET.into(),
                webhook_secret: WOO_HOOK_SECRET.into(),
                webhook_url: Some(format!(
                    "http://127.0.0.1:{port}/v1/webhooks/woocommerce/{WOO}"
                )),
                ..Default::default()
            },
            any,
        )
        .await
        .expect("woocommerce simulator");
        let dir = tempfile::tempdir().expect("dir");
        let dir_url = sqlite_url(&dir);
        let mut h = Harness {
            app: None,
            shop,
            woo,
            port,
            dir_url,
            max_attempts: 30,
            revive_after: Duration::from_secs(30),
            _dir: dir,
        };
        h.boot().await;
        let app = h.app();
        app.location("AMS", true, 1).await;
        app.variants(skus).await;
        for (channel, kind) in [(SHOP, "shopify"), (WOO, "woocommerce")] {
            app.put(&format!("/v1/channels/{channel}"), json!({"kind": kind}))
                .await
                .expect(200);
        }
        let items: Vec<(String, i64)> = skus.iter().map(|s| (s.to_string(), 0)).collect();
        for (channel, sim) in [(SHOP, &h.shop), (WOO, &h.woo)] {
            let listings: Vec<Value> = sim
                .add_listings(&items)
                .into_iter()
                .map(|l| json!({"sku": l.sku, "external": l.external}))
                .collect();
            app.post(
                &format!("/v1/channels/{channel}/listings"),
                Value::Array(listings),
            )
            .await
            .expect(200);
        }
        h
    }

    async fn boot(&mut self) {
        let dir = tempfile::tempdir().expect("dir");
        let mut cfg = config(self.dir_url.clone());
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], self.port));
        cfg.extra_connections = connections(&self.shop, &self.woo);
        cfg.retry.base = Duration::from_millis(50);
        cfg.retry.cap = Duration::from_millis(500);
        cfg.retry.max_attempts = self.max_attempts;
        cfg.retry.revive_after = self.revive_after;
        self.app = Some(TestApp::start(cfg, dir).await);
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("server running")
    }

    /// What stockd wants each (channel, sku) to show.
    async fn desired(&self) -> BTreeMap<(String, String), i64> {
        let page = self
            .app()
            .get("/v1/outbox?pending=false&limit=1000")
            .await
            .expect(200);
        page.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| {
                (
                    (
                        r["channel"].as_str().unwrap_or("").to_string(),
                        r["sku"].as_str().unwrap_or("").to_string(),
                    ),
                    r["desired"]["quantity"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    /// (channel, sku) → what the simulators show.
    fn shown(&self) -> BTreeMap<(String, String), i64> {
        let mut out = BTreeMap::new();
        for (channel, sim) in [(SHOP, &self.shop), (WOO, &self.woo)] {
            for l in sim.listings() {
                out.insert((channel.to_string(), l.sku), l.quantity);
            }
        }
        out
    }

    /// Waits until nothing is pending and every channel shows what stockd wants.
    async fn converged(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let pending = self
                .app()
                .get("/v1/outbox?pending=true&limit=1")
                .await
                .expect(200)
                .body["items"]
                .as_array()
                .map_or(0, Vec::len);
            let desired = self.desired().await;
            let shown = self.shown();
            if pending == 0 && !desired.is_empty() && desired == shown {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no convergence: pending {pending}\n desired {desired:?}\n shown {shown:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.shop.shutdown().await;
        self.woo.shutdown().await;
    }
}

fn shown_of(sim: &RunningSim, sku: &str) -> i64 {
    sim.listings()
        .into_iter()
        .find(|l| l.sku == sku)
        .map_or(-1, |l| l.quantity)
}

#[tokio::test]
async fn a_receipt_reaches_every_channel() {
    let h = Harness::start(&["TEE-1", "TEE-2"]).await;
    h.app().events(receipt("r1", "TEE-1", "AMS", 7)).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    assert_eq!(shown_of(&h.shop, "TEE-1"), 7);
    assert_eq!(shown_of(&h.woo, "TEE-1"), 7);
    assert_eq!(shown_of(&h.woo, "TEE-2"), 0);
    // Latency was measured for the pushes.
    let kpis = h.app().get("/v1/kpis").await.expect(200).body;
    let channels = kpis["channels"].as_array().expect("channels");
    assert!(channels
        .iter()
        .all(|c| c["latency_ms"]["samples"].as_u64().unwrap_or(0) > 0));
    let metrics = h.app().get("/metrics").await.expect(200).text;
    assert!(metrics.contains("stockd_sync_latency_ms{channel=\"shop\",quantile=\"0.95\"}"));
    assert!(metrics
        .contains("stockd_sync_latency_ms{channel=\"shop\",class=\"other\",quantile=\"0.95\"}"));
    assert!(metrics.contains("stockd_outbox_oldest_unsent_age_ms{channel=\"shop\"} 0"));
    assert_eq!(h.shop.stats().rate_limit_violations, 0);
    h.stop().await;
}

#[tokio::test]
async fn an_order_on_one_channel_lowers_the_others() {
    let h = Harness::start(&["MUG-1"]).await;
    h.app().events(receipt("r1", "MUG-1", "AMS", 5)).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    h.shop
        .buy(&[("MUG-1".to_string(), 2)])
        .await
        .expect("the customer buys");
    // The webhook reserves in stockd; WooCommerce follows.
    let deadline = Instant::now() + Duration::from_secs(15);
    while shown_of(&h.woo, "MUG-1") != 3 {
        assert!(
            Instant::now() < deadline,
            "woocommerce still shows {}",
            shown_of(&h.woo, "MUG-1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.converged(Duration::from_secs(15)).await.unwrap();
    assert_eq!(shown_of(&h.shop, "MUG-1"), 3);
    let stock = h.app().stock("MUG-1").await;
    assert_eq!(stock["reserved"], 2, "{stock}");
    // And the other way: a WooCommerce order lowers Shopify.
    h.woo
        .buy(&[("MUG-1".to_string(), 1)])
        .await
        .expect("the customer buys");
    let deadline = Instant::now() + Duration::from_secs(15);
    while shown_of(&h.shop, "MUG-1") != 2 {
        assert!(
            Instant::now() < deadline,
            "shopify still shows {}",
            shown_of(&h.shop, "MUG-1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.converged(Duration::from_secs(15)).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn a_throttle_storm_and_an_outage_end_in_convergence() {
    let h = Harness::start(&["CAP-1", "CAP-2", "CAP-3"]).await;
    h.shop.set_faults(Faults {
        throttle_storm_secs: 2.0,
        retry_after_secs: Some(1.0),
        ..Default::default()
    });
    h.woo.set_faults(Faults {
        outage_secs: 2.0,
        ..Default::default()
    });
    for (i, sku) in ["CAP-1", "CAP-2", "CAP-3"].iter().enumerate() {
        h.app()
            .events(receipt(&format!("r{i}"), sku, "AMS", 3 + i as i64))
            .await;
    }
    h.converged(Duration::from_secs(30)).await.unwrap();
    assert!(h.shop.stats().injected_faults > 0, "the storm happened");
    assert!(h.woo.stats().injected_faults > 0, "the outage happened");
    assert_eq!(h.shop.stats().rate_limit_violations, 0);
    assert_eq!(h.woo.stats().rate_limit_violations, 0);
    let dlq = h.app().get("/v1/dlq").await.expect(200).body;
    assert_eq!(dlq["items"].as_array().map_or(0, Vec::len), 0, "{dlq}");
    h.stop().await;
}

#[tokio::test]
async fn a_permanent_error_is_dead_lettered_and_a_retry_lands_after_the_fix() {
    let h = Harness::start(&["BAD-1", "OK-1"]).await;
    // The first sync first: were it refused too, BAD-1 would have two
    // letters (0 units, superseded, and 4 units), and retrying the first
    // alone leaves the listing parked by the second.
    h.converged(Duration::from_secs(60)).await.unwrap();
    h.woo.set_faults(Faults {
        reject_skus: vec!["BAD-1".into()],
        ..Default::default()
    });
    h.app().events(receipt("r1", "BAD-1", "AMS", 4)).await;
    h.app().events(receipt("r2", "OK-1", "AMS", 2)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let letter = loop {
        let dlq = h.app().get("/v1/dlq").await.expect(200).body;
        if let Some(letter) = dlq["items"].as_array().and_then(|a| a.first()).cloned() {
            break letter;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letter["channel"], WOO);
    assert_eq!(letter["sku"], "BAD-1");
    assert_eq!(letter["superseded"], false, "{letter}");
    assert!(
        letter["body"].as_str().is_some(),
        "the channel's body is kept: {letter}"
    );
    // The other listing is not held up by the dead letter.
    let deadline = Instant::now() + Duration::from_secs(60);
    while shown_of(&h.woo, "OK-1") != 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shown_of(&h.woo, "BAD-1"), 0);
    // Fix the cause, retry from the DLQ.
    h.woo.set_faults(Faults::default());
    let id = letter["id"].as_i64().expect("id");
    h.app()
        .post(&format!("/v1/dlq/{id}/retry"), json!({}))
        .await
        .expect(204);
    // Generous: on a loaded 2-core machine the other channels' first
    // pushes share the wait.
    h.converged(Duration::from_secs(90)).await.unwrap();
    assert_eq!(shown_of(&h.woo, "BAD-1"), 4);
    h.app()
        .post(&format!("/v1/dlq/{id}/retry"), json!({}))
        .await
        .expect_error(404, "unknown_dead_letter");
    h.stop().await;
}

#[tokio::test]
async fn a_parked_listing_receives_a_decrease_and_it_is_pushed() {
    let h = Harness::start(&["BAD-1", "OK-1"]).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    h.woo.set_faults(Faults {
        reject_skus: vec!["BAD-1".into()],
        ..Default::default()
    });
    h.app().events(receipt("r1", "BAD-1", "AMS", 4)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let letter = loop {
        let dlq = h.app().get("/v1/dlq").await.expect(200).body;
        if let Some(letter) = dlq["items"].as_array().and_then(|a| a.first()).cloned() {
            break letter;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letter["superseded"], false);
    // The channel accepts again; nobody retries the letter. A decrease of
    // the parked listing is sent on its own.
    h.woo.set_faults(Faults::default());
    h.app()
        .events(
            json!({"key": "down", "type": "adjust", "sku": "BAD-1", "location": "AMS",
                       "delta": -3, "reason": "damaged"}),
        )
        .await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    assert_eq!(shown_of(&h.woo, "BAD-1"), 1);
    // The old letter stays visible, marked superseded.
    let dlq = h.app().get("/v1/dlq").await.expect(200).body;
    let items = dlq["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{dlq}");
    assert_eq!(items[0]["id"], letter["id"]);
    assert_eq!(items[0]["superseded"], true);
    // The decrease is counted as a protective update.
    let kpis = h.app().get("/v1/kpis").await.expect(200).body;
    let woo = kpis["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["channel"] == WOO))
        .cloned()
        .expect("woo figures");
    assert!(
        woo["latency_ms_protective"]["samples"].as_u64() >= Some(1),
        "{woo}"
    );
    assert_eq!(woo["oldest_unsent_age_ms"], Value::Null, "{woo}");
    h.stop().await;
}

/// An outage longer than the attempts dead-letters an update; once the
/// channel takes pushes again, the parked listing is sent by itself.
#[tokio::test]
async fn an_outage_longer_than_the_retries_parks_nothing_for_good() {
    let mut h = Harness::start(&["OUT-1", "OK-1"]).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    h.app.take().expect("running").stop().await;
    h.max_attempts = 3;
    h.revive_after = Duration::from_secs(1);
    h.boot().await;
    h.woo.set_faults(Faults {
        outage_secs: 3.0,
        ..Default::default()
    });
    h.app().events(receipt("r1", "OUT-1", "AMS", 4)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let letter = loop {
        let dlq = h.app().get("/v1/dlq").await.expect(200).body;
        if let Some(letter) = dlq["items"].as_array().and_then(|a| a.first()).cloned() {
            break letter;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(letter["sku"], "OUT-1");
    assert_eq!(letter["status"], 503, "{letter}");
    assert_eq!(letter["transient"], true, "{letter}");
    // Nobody retries the letter; after the outage another update is taken.
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.app().events(receipt("r2", "OK-1", "AMS", 2)).await;
    h.converged(Duration::from_secs(30)).await.unwrap();
    assert_eq!(shown_of(&h.woo, "OUT-1"), 4);
    assert_eq!(shown_of(&h.woo, "OK-1"), 2);
    let dlq = h.app().get("/v1/dlq").await.expect(200).body;
    assert_eq!(dlq["items"].as_array().map_or(0, Vec::len), 0, "{dlq}");
    h.stop().await;
}

/// On a channel that takes no other update after an outage (nothing else
/// to acknowledge), a decrease parked by the outage is sent again by a
/// probe soon after it, not ten minutes later.
#[tokio::test]
async fn a_decrease_parked_by_an_outage_lands_on_a_quiet_channel() {
    let mut h = Harness::start(&["QUIET-1"]).await;
    h.app().events(receipt("r0", "QUIET-1", "AMS", 6)).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    h.app.take().expect("running").stop().await;
    h.max_attempts = 3;
    h.revive_after = Duration::from_secs(1);
    h.boot().await;
    h.woo.set_faults(Faults {
        outage_secs: 3.0,
        ..Default::default()
    });
    h.app()
        .events(
            json!({"key": "a1", "type": "adjust", "sku": "QUIET-1", "location": "AMS",
                       "delta": -4, "reason": "damaged"}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dlq = h.app().get("/v1/dlq").await.expect(200).body;
        if dlq["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing else happens: the probe alone must bring the 2 to the shop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while shown_of(&h.woo, "QUIET-1") != 2 {
        assert!(
            Instant::now() < deadline,
            "the parked decrease never landed: the shop shows {}",
            shown_of(&h.woo, "QUIET-1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn a_bad_signature_gets_401_and_changes_nothing() {
    let h = Harness::start(&["SIG-1"]).await;
    h.app().events(receipt("r1", "SIG-1", "AMS", 5)).await;
    let before = h.app().get("/v1/ledger").await.expect(200).body;
    let body = json!({"id": 9001, "line_items": [{"id": 1, "variant_id": 1, "sku": "SIG-1", "quantity": 1}]})
        .to_string();
    let reply = h
        .app()
        .send(
            "POST",
            &format!("/v1/webhooks/shopify/{SHOP}"),
            Some(("application/json", body.into_bytes())),
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let reply = h
        .app()
        .send(
            "POST",
            &format!("/v1/webhooks/woocommerce/{WOO}"),
            Some((
                "application/json",
                b"{\"id\":1,\"status\":\"processing\"}".to_vec(),
            )),
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let after = h.app().get("/v1/ledger").await.expect(200).body;
    assert_eq!(before, after);
    h.stop().await;
}

#[tokio::test]
async fn a_duplicate_webhook_applies_once() {
    let h = Harness::start(&["DUP-1"]).await;
    h.app().events(receipt("r1", "DUP-1", "AMS", 6)).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    for sim in [&h.shop, &h.woo] {
        sim.set_faults(Faults {
            duplicate_webhook_rate: 1.0,
            ..Default::default()
        });
    }
    h.shop.buy(&[("DUP-1".to_string(), 1)]).await.expect("buy");
    h.woo.buy(&[("DUP-1".to_string(), 2)]).await.expect("buy");
    h.converged(Duration::from_secs(15)).await.unwrap();
    let stock = h.app().stock("DUP-1").await;
    assert_eq!(stock["reserved"], 3, "{stock}");
    let ledger = h.app().get("/v1/ledger?sku=DUP-1").await.expect(200).body;
    let orders = ledger["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["type"] == "order")
        .count();
    assert_eq!(orders, 2, "{ledger}");
    // Each order was delivered twice (a delivery counts once answered).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(h.shop.stats().webhooks_sent >= 2 && h.woo.stats().webhooks_sent >= 2) {
        assert!(Instant::now() < deadline, "duplicates were delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn a_restart_mid_traffic_ends_in_convergence() {
    let skus = ["RS-1", "RS-2", "RS-3", "RS-4"];
    let mut h = Harness::start(&skus).await;
    for (i, sku) in skus.iter().enumerate() {
        h.app()
            .events(receipt(&format!("r{i}"), sku, "AMS", 20))
            .await;
    }
    h.converged(Duration::from_secs(15)).await.unwrap();
    // Stop stockd while Shopify customers keep buying (Shopify retries its
    // webhooks) and the warehouse keeps sending once it is back.
    let app = h.app.take().expect("running");
    app.stop().await;
    for sku in skus {
        h.shop.buy(&[(sku.to_string(), 1)]).await.expect("buy");
    }
    h.boot().await;
    for (i, sku) in skus.iter().enumerate() {
        h.app()
            .events(receipt(&format!("after-{i}"), sku, "AMS", 1))
            .await;
    }
    h.converged(Duration::from_secs(30)).await.unwrap();
    for sku in skus {
        let stock = h.app().stock(sku).await;
        assert_eq!(stock["reserved"], 1, "{sku}: {stock}");
        assert_eq!(shown_of(&h.woo, sku), 20, "{sku}");
    }
    h.stop().await;
}

/// `stockd serve` as a child process with channel connections from a
/// config file (secrets from the environment), waiting until it listens.
fn spawn_stockd(config: &std::path::Path, db: &str, port: u16) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockd"))
        .env_remove("STOCKD_LISTEN")
        .env_remove("STOCKD_DATABASE_URL")
        .env_remove("STOCKD_CONFIG")
        .env("T_SHOP_TOKEN", SHOP_TOKEN)
        .env("T_SHOP_SECRET", SHOP_SECRET)
        .env("T_WOO_KEY", WOO_KEY)
        .env("T_WOO_SECRET", WOO_SECRET)
        .env("T_WOO_HOOK", WOO_HOOK_SECRET)
        .args(["--config", &config.display().to_string(), "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--database", db])
        .args(["--log-format", "json", "--log-filter", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stockd serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines
            .next()
            .expect("stockd logs its address before exiting")
            .expect("readable log");
        if line.contains("stockd listening") {
            break;
        }
    }
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    child
}

#[tokio::test]
async fn a_kill_and_restart_of_the_binary_mid_traffic_loses_nothing() {
    let port = free_port();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let shop = stockd_sim::shopify::start(
        stockd_sim::shopify::Config {
            access_token: SHOP_TOKEN.into(),
            webhook_secret: SHOP_SECRET.into(),
            webhook_url: Some(format!(
                "http://127.0.0.1:{port}/v1/webhooks/shopify/{SHOP}"
            )),
            webhook_retry_delays: vec![Duration::from_millis(500); 8],
            ..Default::default()
        },
        any,
    )
    .await
    .expect("shopify simulator");
    let woo = stockd_sim::woocommerce::start(
        stockd_sim::woocommerce::Config {
            consumer_key: WOO_KEY.into(),
            consumer_secret: WOO_SECRET.into(),
            webhook_secret: WOO_HOOK_SECRET.into(),
            ..Default::default()
        },
        any,
    )
    .await
    .expect("woocommerce simulator");
    let dir = tempfile::tempdir().expect("dir");
    let db = sqlite_url(&dir);
    let config = dir.path().join("stockd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[connectors.{SHOP}]
kind = "shopify"
url = "{shop_url}"
access_token_env = "T_SHOP_TOKEN"
webhook_secret_env = "T_SHOP_SECRET"

[connectors.{WOO}]
kind = "woocommerce"
url = "{woo_url}"
consumer_key_env = "T_WOO_KEY"
consumer_secret_env = "T_WOO_SECRET"
webhook_secret_env = "T_WOO_HOOK"
"#,
            shop_url = shop.base_url,
            woo_url = woo.base_url
        ),
    )
    .expect("config written");
    let mut child = spawn_stockd(&config, &db, port);
    let base = format!("http://127.0.0.1:{port}");
    // No idle connections: the server behind them is killed.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let send = |method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, format!("{base}{path}"))
            .json(&body)
            .send()
    };
    let skus: Vec<String> = (0..20).map(|i| format!("K-{i:02}")).collect();
    send(
        reqwest::Method::PUT,
        "/v1/locations/AMS".into(),
        json!({"name": "A"}),
    )
    .await
    .expect("location");
    let variants: Vec<Value> = skus.iter().map(|s| json!({"sku": s})).collect();
    send(
        reqwest::Method::POST,
        "/v1/variants".into(),
        Value::Array(variants),
    )
    .await
    .expect("variants");
    for (channel, kind, sim) in [(SHOP, "shopify", &shop), (WOO, "woocommerce", &woo)] {
        send(
            reqwest::Method::PUT,
            format!("/v1/channels/{channel}"),
            json!({"kind": kind}),
        )
        .await
        .expect("channel");
        let items: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 0)).collect();
        let listings: Vec<Value> = sim
            .add_listings(&items)
            .into_iter()
            .map(|l| json!({"sku": l.sku, "external": l.external}))
            .collect();
        let reply = send(
            reqwest::Method::POST,
            format!("/v1/channels/{channel}/listings"),
            Value::Array(listings),
        )
        .await
        .expect("listings");
        assert_eq!(reply.status(), 200);
    }
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    let mut n = 0;
    // Traffic before, across and after a SIGKILL.
    for round in 0..3 {
        for sku in &skus {
            n += 1;
            let reply = send(
                reqwest::Method::POST,
                "/v1/events".into(),
                json!({"key": format!("k{n}"), "type": "receipt", "sku": sku, "location": "AMS", "qty": 3}),
            )
            .await
            .expect("receipt");
            assert_eq!(reply.status(), 200);
            *total.entry(sku.clone()).or_default() += 3;
        }
        if round == 1 {
            // Kill without warning while updates are in flight, then buy on
            // Shopify while stockd is down (Shopify retries its webhooks).
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            for sku in skus.iter().take(5) {
                if shop.buy(&[(sku.clone(), 1)]).await.is_ok() {
                    *sold.entry(sku.clone()).or_default() += 1;
                }
            }
            child = spawn_stockd(&config, &db, port);
        }
    }
    // Convergence: each channel shows total − sold for every SKU.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = |sku: &String| total[sku] - sold.get(sku).copied().unwrap_or(0);
        let shop_ok = shop.listings().iter().all(|l| l.quantity == want(&l.sku));
        let woo_ok = woo.listings().iter().all(|l| l.quantity == want(&l.sku));
        if shop_ok && woo_ok {
            break;
        }
        if Instant::now() >= deadline {
            let outbox = client
                .get(format!("{base}/v1/outbox?pending=false&limit=100"))
                .send()
                .await
                .expect("outbox")
                .text()
                .await
                .expect("text");
            eprintln!("outbox at the deadline: {outbox}");
        }
        assert!(
            Instant::now() < deadline,
            "no convergence after the restart: shop {:?} woo {:?} want total {total:?} sold {sold:?}",
            shop.listings().iter().map(|l| (l.sku.clone(), l.quantity)).collect::<Vec<_>>(),
            woo.listings().iter().map(|l| (l.sku.clone(), l.quantity)).collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!sold.is_empty(), "customers bought while stockd was down");
    let _ = child.kill();
    let _ = child.wait();
    shop.shutdown().await;
    woo.shutdown().await;
}

/// `pushes` per channel of one instance, from `/v1/kpis`.
async fn pushes_of(client: &reqwest::Client, base: &str) -> BTreeMap<String, u64> {
    let kpis: Value = client
        .get(format!("{base}/v1/kpis"))
        .send()
        .await
        .expect("kpis")
        .json()
        .await
        .expect("json");
    kpis["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap_or("").to_string(),
                c["pushes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_instances_on_one_postgres_push_once_and_take_over_after_a_kill() {
    let Some(db) = stockd_store::test_support::fresh_postgres_url("two_instances").await else {
        return;
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let shop = stockd_sim::shopify::start(
        stockd_sim::shopify::Config {
            access_token: SHOP_TOKEN.into(),
            webhook_secret: SHOP_SECRET.into(),
            ..Default::default()
        },
        any,
    )
    .await
    .expect("shopify simulator");
    let woo = stockd_sim::woocommerce::start(
        stockd_sim::woocommerce::Config {
            consumer_key: WOO_KEY.into(),
            consumer_secret: WOO_SECRET.into(),
            webhook_secret: WOO_HOOK_SECRET.into(),
            ..Default::default()
        },
        any,
    )
    .await
    .expect("woocommerce simulator");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("stockd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[connectors.{SHOP}]
kind = "shopify"
url = "{shop_url}"
access_token_env = "T_SHOP_TOKEN"
webhook_secret_env = "T_SHOP_SECRET"

[connectors.{WOO}]
kind = "woocommerce"
url = "{woo_url}"
consumer_key_env = "T_WOO_KEY"
consumer_secret_env = "T_WOO_SECRET"
webhook_secret_env = "T_WOO_HOOK"
"#,
            shop_url = shop.base_url,
            woo_url = woo.base_url
        ),
    )
    .expect("config written");
    let (port_a, port_b) = (free_port(), free_port());
    let mut owner = spawn_stockd(&config, &db, port_a);
    let base_a = format!("http://127.0.0.1:{port_a}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let send = |base: &str, method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, format!("{base}{path}"))
            .json(&body)
            .send()
    };
    let skus: Vec<String> = (0..10).map(|i| format!("D-{i:02}")).collect();
    send(
        &base_a,
        reqwest::Method::PUT,
        "/v1/locations/AMS".into(),
        json!({"name": "A"}),
    )
    .await
    .expect("location");
    let variants: Vec<Value> = skus.iter().map(|s| json!({"sku": s})).collect();
    send(
        &base_a,
        reqwest::Method::POST,
        "/v1/variants".into(),
        Value::Array(variants),
    )
    .await
    .expect("variants");
    for (channel, kind, sim) in [(SHOP, "shopify", &shop), (WOO, "woocommerce", &woo)] {
        send(
            &base_a,
            reqwest::Method::PUT,
            format!("/v1/channels/{channel}"),
            json!({"kind": kind}),
        )
        .await
        .expect("channel");
        let items: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 0)).collect();
        let listings: Vec<Value> = sim
            .add_listings(&items)
            .into_iter()
            .map(|l| json!({"sku": l.sku, "external": l.external}))
            .collect();
        send(
            &base_a,
            reqwest::Method::POST,
            format!("/v1/channels/{channel}/listings"),
            Value::Array(listings),
        )
        .await
        .expect("listings");
    }
    // The second instance starts once the first holds the channels.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let standby = spawn_stockd(&config, &db, port_b);
    let base_b = format!("http://127.0.0.1:{port_b}");
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    let mut n = 0;
    let mut receipts = |total: &mut BTreeMap<String, i64>| {
        let mut out = Vec::new();
        for sku in &skus {
            n += 1;
            *total.entry(sku.clone()).or_default() += 2;
            out.push(
                json!({"key": format!("k{n}"), "type": "receipt", "sku": sku,
                            "location": "AMS", "qty": 2}),
            );
        }
        out
    };
    // Events arrive at both instances.
    for (i, event) in receipts(&mut total).into_iter().enumerate() {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let reply = send(base, reqwest::Method::POST, "/v1/events".into(), event)
            .await
            .expect("receipt");
        assert_eq!(reply.status(), 200);
    }
    let converged = |total: &BTreeMap<String, i64>| {
        shop.listings().iter().all(|l| l.quantity == total[&l.sku])
            && woo.listings().iter().all(|l| l.quantity == total[&l.sku])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !converged(&total) {
        assert!(
            Instant::now() < deadline,
            "no convergence with two instances"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only the lease holder pushed.
    let pushed_a = pushes_of(&client, &base_a).await;
    let pushed_b = pushes_of(&client, &base_b).await;
    assert!(
        pushed_a.get(SHOP).copied().unwrap_or(0) > 0 && pushed_a.get(WOO).copied().unwrap_or(0) > 0,
        "the first instance pushed: {pushed_a:?}"
    );
    assert!(
        pushed_b.values().all(|n| *n == 0),
        "the standby pushed nothing: {pushed_b:?}"
    );
    let updates_before = shop.stats().updates_applied + woo.stats().updates_applied;

    // kill -9 of the owner; the standby takes over and converges.
    owner.kill().expect("SIGKILL");
    owner.wait().expect("reaped");
    let killed_at = Instant::now();
    for event in receipts(&mut total) {
        let reply = send(&base_b, reqwest::Method::POST, "/v1/events".into(), event)
            .await
            .expect("receipt");
        assert_eq!(reply.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !converged(&total) {
        assert!(
            Instant::now() < deadline,
            "no takeover: shop {:?} want {total:?}",
            shop.listings()
                .iter()
                .map(|l| (l.sku.clone(), l.quantity))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    let pushed_b = pushes_of(&client, &base_b).await;
    assert!(
        pushed_b.get(SHOP).copied().unwrap_or(0) > 0 && pushed_b.get(WOO).copied().unwrap_or(0) > 0,
        "the standby took over: {pushed_b:?}"
    );
    // Each SKU changed once more per channel: nothing was pushed twice.
    let updates_after = shop.stats().updates_applied + woo.stats().updates_applied;
    assert!(
        updates_after - updates_before <= 2 * skus.len() as u64,
        "{} updates for {} listings",
        updates_after - updates_before,
        2 * skus.len()
    );
    assert_eq!(shop.stats().rate_limit_violations, 0);
    assert_eq!(woo.stats().rate_limit_violations, 0);
    let mut standby = standby;
    let _ = standby.kill();
    let _ = standby.wait();
    shop.shutdown().await;
    woo.shutdown().await;
}

/// All five channels, as `stockd demo` runs them: stockd on SQLite with the
/// five simulators and the real connectors pointed at them.
struct FiveChannels {
    app: TestApp,
    sims: Vec<stockd::demo::channels::SimChannel>,
}

impl FiveChannels {
    async fn start(skus: &[&str], opening: i64) -> FiveChannels {
        use stockd::demo::channels::{start, SimKind};
        let port = free_port();
        let (sims, connections) = start(&SimKind::ALL, &format!("http://127.0.0.1:{port}"))
            .await
            .expect("simulators start");
        let dir = tempfile::tempdir().expect("dir");
        let mut cfg = config(sqlite_url(&dir));
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], port));
        cfg.extra_connections = connections;
        let app = TestApp::start(cfg, dir).await;
        app.location("AMS", true, 1).await;
        app.variants(skus).await;
        for (i, sku) in skus.iter().enumerate() {
            app.events(receipt(&format!("open-{i}"), sku, "AMS", opening))
                .await;
        }
        for channel in &sims {
            app.put(
                &format!("/v1/channels/{}", channel.channel()),
                json!({"kind": channel.kind.kind()}),
            )
            .await
            .expect(200);
            let items: Vec<(String, i64)> = skus.iter().map(|s| (s.to_string(), 0)).collect();
            let listings: Vec<Value> = channel
                .sim
                .add_listings(&items)
                .into_iter()
                .map(|l| json!({"sku": l.sku, "external": l.external}))
                .collect();
            app.post(
                &format!("/v1/channels/{}/listings", channel.channel()),
                Value::Array(listings),
            )
            .await
            .expect(200);
        }
        FiveChannels { app, sims }
    }

    fn sim(&self, kind: stockd::demo::channels::SimKind) -> &RunningSim {
        &self
            .sims
            .iter()
            .find(|c| c.kind == kind)
            .expect("simulator")
            .sim
    }

    /// Waits until every channel shows what stockd wants: the quantity, or
    /// the availability where the channel shows no quantity.
    async fn converged(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let page = self
                .app
                .get("/v1/outbox?pending=false&limit=1000")
                .await
                .expect(200)
                .body;
            let rows = page["items"].as_array().cloned().unwrap_or_default();
            let pending = rows
                .iter()
                .filter(|r| !r["dirty_since"].is_null() || r["parked"] == true)
                .count();
            let mut mismatches = Vec::new();
            for channel in &self.sims {
                for listing in channel.sim.listings() {
                    let row = rows.iter().find(|r| {
                        r["channel"] == channel.channel() && r["sku"] == listing.sku.as_str()
                    });
                    let ok = row.is_some_and(|r| {
                        if channel.kind.shows_quantity() {
                            r["desired"]["quantity"] == listing.quantity
                        } else {
                            r["desired"]["availability"] == listing.availability.as_str()
                        }
                    });
                    if !ok {
                        mismatches.push(format!(
                            "{}/{}: shows {} {}",
                            channel.channel(),
                            listing.sku,
                            listing.quantity,
                            listing.availability
                        ));
                    }
                }
            }
            if pending == 0 && mismatches.is_empty() && !rows.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("pending {pending}; differ: {mismatches:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.app.stop().await;
        for channel in self.sims {
            channel.sim.shutdown().await;
        }
    }
}

#[tokio::test]
async fn five_channels_converge_and_marketplace_orders_lower_the_others() {
    use stockd::demo::channels::SimKind;
    let skus = ["FC-1", "FC-2", "FC-3"];
    let h = FiveChannels::start(&skus, 4).await;
    h.converged(Duration::from_secs(60)).await.unwrap();
    for channel in &h.sims {
        assert_eq!(
            channel.sim.stats().rate_limit_violations,
            0,
            "{}",
            channel.channel()
        );
        assert!(
            channel.sim.stats().updates_applied > 0,
            "{} was pushed to",
            channel.channel()
        );
    }
    // An order on Amazon (notification) and one on bol.com (polled) lower
    // the other channels.
    h.sim(SimKind::Amazon)
        .buy(&[("FC-1".to_string(), 1)])
        .await
        .expect("amazon order");
    h.sim(SimKind::Bol)
        .buy(&[("FC-2".to_string(), 2)])
        .await
        .expect("bol order");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shop = h.sim(SimKind::Shopify).listings();
        let q = |sku: &str| {
            shop.iter()
                .find(|l| l.sku == sku)
                .map_or(-1, |l| l.quantity)
        };
        if q("FC-1") == 3 && q("FC-2") == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shopify shows FC-1 {} FC-2 {}",
            q("FC-1"),
            q("FC-2")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.converged(Duration::from_secs(60)).await.unwrap();
    // Google saw only availability transitions: the quantity changes above
    // did not reach it (one update per product: the first, in stock).
    let gmc = h.sim(SimKind::Gmc).stats();
    assert_eq!(gmc.updates_applied, skus.len() as u64, "{gmc:?}");
    // Selling out is a transition Google receives at once, budget or not.
    h.app
        .events(
            json!({"key": "gone", "type": "adjust", "sku": "FC-3", "location": "AMS",
                       "delta": -4, "reason": "damaged"}),
        )
        .await;
    h.converged(Duration::from_secs(60)).await.unwrap();
    let fc3 = h
        .sim(SimKind::Gmc)
        .listings()
        .into_iter()
        .find(|l| l.sku == "FC-3")
        .expect("listed");
    assert_eq!(fc3.availability, "out_of_stock");
    for channel in &h.sims {
        assert_eq!(
            channel.sim.stats().rate_limit_violations,
            0,
            "{}",
            channel.channel()
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn a_short_demo_ends_converged_with_nothing_refused() {
    let options = stockd::demo::DemoOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        duration: Some(Duration::from_secs(4)),
        variants: 60,
        kits: 5,
        orders_per_second: 5.0,
        warehouse_per_second: 5.0,
        report: None,
        inbound_nats: None,
    };
    let report = stockd::demo::run(options, std::future::pending())
        .await
        .expect("the demo runs");
    assert!(report.drained, "{report:?}");
    assert_eq!(report.drift_listings, 0, "{report:?}");
    // The closing reconciliation found and fixed the back-office edit on
    // every channel (drift_listings above is measured after the fix).
    assert_eq!(report.reconciliation.len(), 5, "{report:?}");
    for r in report.reconciliation.values() {
        assert_eq!((r.drift, r.fixed), (1, 1), "{report:?}");
    }
    assert_eq!(report.kpis.len(), 5, "{report:?}");
    assert!(
        report.kpis.values().all(|k| k.drift_rate.is_some()),
        "{report:?}"
    );
    assert_eq!(report.dlq, 0, "{report:?}");
    assert_eq!(report.rate_limit_violations, 0, "{report:?}");
    assert_eq!(
        report.pushes.len(),
        5,
        "pushes on every channel: {report:?}"
    );
    assert!(report.pushes.values().all(|n| *n > 0), "{report:?}");
    assert!(
        report.order_lines > 0 && report.events_applied > 60,
        "{report:?}"
    );
    let summary = stockd::demo::summary(&report);
    assert!(
        summary.contains("drift listings          0 of"),
        "{summary}"
    );
}

#[tokio::test]
async fn a_shopify_refund_with_restock_returns_shipped_units_and_releases_the_rest() {
    let h = Harness::start(&["RET-1"]).await;
    h.app().events(receipt("r1", "RET-1", "AMS", 5)).await;
    h.converged(Duration::from_secs(15)).await.unwrap();
    let wait_for = |what: &'static str, check: fn(&serde_json::Value) -> bool| {
        let app = h.app();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let stock = app.stock("RET-1").await;
                if check(&stock) {
                    return stock;
                }
                assert!(Instant::now() < deadline, "{what}: {stock}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Shipped, then refunded with restock: the units come back as a return.
    let shipped = h.shop.buy(&[("RET-1".to_string(), 2)]).await.unwrap();
    wait_for("reserved", |s| s["reserved"] == 2).await;
    h.app()
        .events(json!({"key": "ship", "type": "ship", "channel": SHOP, "order_id": shipped}))
        .await;
    h.shop.refund_order(&shipped, true).await.unwrap();
    let stock = wait_for("pending return", |s| s["pending_return"] == 2).await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(3), Some(0))
    );
    let open = h
        .app()
        .get("/v1/returns?status=open")
        .await
        .expect(200)
        .body;
    let rma = open["items"][0]["rma_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        rma.starts_with(&format!("{SHOP}:refunds/create:")),
        "{open}"
    );
    // Refunded before shipping: the reservation is released, nothing returns.
    let unshipped = h.shop.buy(&[("RET-1".to_string(), 1)]).await.unwrap();
    wait_for("reserved", |s| s["reserved"] == 1).await;
    h.shop.refund_order(&unshipped, true).await.unwrap();
    let stock = wait_for("released", |s| s["reserved"] == 0).await;
    assert_eq!(stock["pending_return"], 2, "{stock}");
    h.stop().await;
}
