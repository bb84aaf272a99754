//! Reconciliation on bol.com's bulk path: with enough listings a run reads
//! the whole catalogue through the offers export (a handful of requests)
//! instead of one offer GET per listing; back-office edits are found and
//! fixed, an offer stockd does not know is reported and left alone, and a
//! run stopped mid-way completes after a restart. The read waits while
//! protective updates are due on the channel. A run of a real `stockd
//! serve` killed with SIGKILL mid-way (page by page) completes after restart.

use crate::helpers::{config, free_port, receipt, sqlite_url, TestApp};
use crate::tracked::{self, get_json};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockd_channels::bol;
use stockd_channels::{ChannelError, HttpRequest, HttpResponse, ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::RunningSim;

const BOL: &str = "bol";
const CLIENT: &str = "bol-bulk-client";
const SECRET: &str = "bol-bulk-secret";
/// Listings from which the connector reads the export.
const EXPORT_FROM: usize = 50;
const OPENING: i64 = 5;

/// Passes requests on and remembers, in the order they left, the method
/// and path of each (what the channel saw first).
struct Recorder {
    inner: Arc<dyn Transport>,
    sent: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Transport for Recorder {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let path = request
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_default();
        self.sent
            .lock()
            .expect("log")
            .push(format!("{} {path}", request.method));
        self.inner.send(request).await
    }
}

struct Setup {
    app: Option<TestApp>,
    sim: RunningSim,
    sent: Arc<Mutex<Vec<String>>>,
    connection: stockd::outbound::dispatch::Connection,
    db: String,
    port: u16,
    skus: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// The bol simulator with its published limits (the export's 10 an
    /// hour included) and `n` offers listed in stockd with `OPENING` units
    /// each, plus one offer (`STRAY-1`) stockd does not know; waits until
    /// the channel shows stockd's quantities.
    async fn start(n: usize, page_size: usize) -> Setup {
        let sim = stockd_sim::bol::start(
            stockd_sim::bol::Config {
                client_id: CLIENT.into(),
                client_secret: SECRET.into(),
                export_delay: Duration::from_millis(300),
                ..Default::default()
            },
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("bol simulator");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let transport: Arc<dyn Transport> = Arc::new(Recorder {
            inner: Arc::new(ReqwestTransport::new(Duration::from_secs(10)).expect("http client")),
            sent: sent.clone(),
        });
        let connection = stockd::outbound::dispatch::Connection {
            channel: ChannelId::parse(BOL.to_string()).expect("id"),
            connector: Arc::new(bol::Bol::new(
                bol::Config {
                    api_url: sim.base_url.clone(),
                    login_url: sim.base_url.clone(),
                    client_id: CLIENT.into(),
                    client_secret: SECRET.into(),
                    process_poll_interval: Duration::from_millis(100),
                    export_from: Some(EXPORT_FROM),
                    ..Default::default()
                },
                transport,
            )),
        };
        let dir = tempfile::tempdir().expect("dir");
        let mut h = Setup {
            app: None,
            sim,
            sent,
            connection,
            db: sqlite_url(&dir),
            port: free_port(),
            skus: (0..n).map(|i| format!("BK-{i:03}")).collect(),
            _dir: dir,
        };
        h.boot(page_size).await;
        let app = h.app();
        app.location("AMS", true, 1).await;
        let refs: Vec<&str> = h.skus.iter().map(String::as_str).collect();
        app.variants(&refs).await;
        let receipts: Vec<Value> = h
            .skus
            .iter()
            .map(|sku| receipt(&format!("open-{sku}"), sku, "AMS", OPENING))
            .collect();
        app.events(Value::Array(receipts)).await;
        app.put(&format!("/v1/channels/{BOL}"), json!({"kind": "bol"}))
            .await
            .expect(200);
        let items: Vec<(String, i64)> = h.skus.iter().map(|s| (s.clone(), 0)).collect();
        let listings: Vec<Value> = h
            .sim
            .add_listings(&items)
            .into_iter()
            .map(|l| json!({"sku": l.sku, "external": l.external}))
            .collect();
        app.post(
            &format!("/v1/channels/{BOL}/listings"),
            Value::Array(listings),
        )
        .await
        .expect(200);
        // An offer made in bol's seller dashboard, unknown to stockd.
        h.sim.add_listings(&[("STRAY-1".to_string(), 7)]);
        h.converged().await;
        h
    }

    async fn boot(&mut self, page_size: usize) {
        let dir = tempfile::tempdir().expect("dir");
        let mut cfg = config(self.db.clone());
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], self.port));
        cfg.extra_connections = vec![self.connection.clone()];
        cfg.reconcile.schedule = None;
        cfg.reconcile.page_size = page_size;
        cfg.reconcile.confirm_delay = Duration::from_millis(300);
        self.app = Some(TestApp::start(cfg, dir).await);
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("server running")
    }

    fn quantity(&self, sku: &str) -> Option<i64> {
        self.sim
            .listings()
            .into_iter()
            .find(|l| l.sku == sku)
            .map(|l| l.quantity)
    }

    /// Waits until nothing is pending and every listed offer shows
    /// `OPENING`.
    async fn converged(&self) {
        self.converged_at(OPENING).await
    }

    /// Waits until nothing is pending and every listed offer shows `quantity`.
    async fn converged_at(&self, quantity: i64) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pending = self
                .app()
                .get("/v1/outbox?pending=true&limit=1")
                .await
                .expect(200)
                .body["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            let shown = self.sim.listings();
            let off: Vec<&str> = shown
                .iter()
                .filter(|l| l.sku != "STRAY-1" && l.quantity != quantity)
                .map(|l| l.sku.as_str())
                .collect();
            if !pending && off.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not converged: pending {pending}, off {off:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_run(&self) -> i64 {
        let started = self
            .app()
            .post("/v1/reconciliations", json!({"channel": BOL}))
            .await
            .expect(202);
        started.body["runs"][0]["id"].as_i64().expect("id")
    }

    async fn wait_run(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let run = self
                .app()
                .get(&format!("/v1/reconciliations/{id}"))
                .await
                .expect(200)
                .body;
            if run["status"] == "completed" || run["status"] == "failed" {
                return run;
            }
            assert!(Instant::now() < deadline, "run unfinished: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn items(&self, id: i64, class: &str) -> Vec<Value> {
        self.app()
            .get(&format!("/v1/reconciliations/{id}/items?class={class}"))
            .await
            .expect(200)
            .body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_bulk_run_on_bol_finds_and_fixes_edits_and_reports_unknown_offers() {
    let n = 120;
    let h = Setup::start(n, 250).await;
    // A merchant edits two offers in bol's seller dashboard.
    h.sim.edit_quantity("BK-007", 1).expect("edit");
    h.sim.edit_quantity("BK-093", 0).expect("edit");
    let id = h.start_run().await;
    let run = h.wait_run(id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["listings_checked"], n, "{run}");
    assert_eq!(run["counts"]["channel_differs"], 2, "{run}");
    assert_eq!(run["counts"]["in_sync"], n - 2, "{run}");
    assert_eq!(run["counts"]["missing_on_channel"], 0, "{run}");
    assert_eq!(run["counts"]["unknown_to_stockd"], 1, "{run}");
    assert_eq!(run["fixed"], 2, "{run}");
    // One export (request, status polls, download) and two confirming
    // GETs, not one GET per listing.
    let requests = run["channel_reads"].as_u64().expect("channel_reads");
    assert!((4..=20).contains(&requests), "{run}");
    let differs = h.items(id, "channel_differs").await;
    let skus: Vec<&str> = differs.iter().filter_map(|i| i["sku"].as_str()).collect();
    assert_eq!(skus, ["BK-007", "BK-093"], "{differs:?}");
    assert!(differs.iter().all(|i| i["fixed"] == true), "{differs:?}");
    let unknown = h.items(id, "unknown_to_stockd").await;
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0]["sku"], "STRAY-1", "{unknown:?}");
    assert_eq!(unknown[0]["observed"]["quantity"], 7, "{unknown:?}");
    assert_eq!(unknown[0]["fixed"], false, "{unknown:?}");
    // The fixes reach bol; the unknown offer is left as it was.
    h.converged().await;
    assert_eq!(h.quantity("BK-007"), Some(OPENING));
    assert_eq!(h.quantity("STRAY-1"), Some(7));
    // A second run finds nothing to fix.
    let again = h.wait_run(h.start_run().await).await;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["counts"]["in_sync"], n, "{again}");
    assert_eq!(again["counts"]["unknown_to_stockd"], 1, "{again}");
    assert_eq!(again["fixed"], 0, "{again}");
    h.stop().await;
}

#[tokio::test]
async fn a_bulk_run_stopped_mid_way_completes_after_a_restart() {
    let n = 120;
    // Pages of 10: one edited offer per page, so every page waits for its
    // confirming read and the run is still going when the server stops.
    let mut h = Setup::start(n, 10).await;
    for i in (3..n).step_by(10) {
        h.sim.edit_quantity(&format!("BK-{i:03}"), 2).expect("edit");
    }
    let id = h.start_run().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = h
            .app()
            .get(&format!("/v1/reconciliations/{id}"))
            .await
            .expect(200)
            .body;
        if run["listings_checked"].as_u64().unwrap_or(0) >= 20 {
            assert_eq!(run["status"], "running", "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Down mid-run: the run stays unfinished in the database.
    h.app.take().expect("app").stop().await;
    let unfinished = {
        let store = stockd_store::open(&h.db).await.expect("store");
        let run = store.recon_run(id).await.expect("run").expect("exists");
        store.close().await;
        run
    };
    assert_eq!(unfinished.status.as_str(), "running");
    assert!(unfinished.checked < n as u64, "{unfinished:?}");
    h.boot(10).await;
    let run = h.wait_run(id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["listings_checked"], n, "{run}");
    assert_eq!(run["total"], n, "{run}");
    assert_eq!(run["counts"]["channel_differs"], 12, "{run}");
    assert_eq!(run["counts"]["unknown_to_stockd"], 1, "{run}");
    assert_eq!(run["fixed"], 12, "{run}");
    // Two exports (one per start) and twelve confirming GETs.
    let requests = run["channel_reads"].as_u64().expect("channel_reads");
    assert!((18..=60).contains(&requests), "{run}");
    h.converged().await;
    h.stop().await;
}

#[tokio::test]
async fn a_bulk_read_waits_for_the_protective_updates_due_on_the_channel() {
    let n = 400;
    let h = Setup::start(n, 250).await;
    h.sent.lock().expect("log").clear();
    // Every offer loses a unit: 400 protective updates, which bol's 50
    // stock PUTs a second take about 8 s to send.
    let downs: Vec<Value> = h
        .skus
        .iter()
        .map(|sku| {
            json!({"key": format!("down-{sku}"), "type": "adjust", "sku": sku,
                   "location": "AMS", "delta": -1, "reason": "damaged"})
        })
        .collect();
    h.app().events(Value::Array(downs)).await;
    let id = h.start_run().await;
    let run = h.wait_run(id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let sent = h.sent.lock().expect("log").clone();
    let export = sent
        .iter()
        .position(|r| r == "POST /retailer/offers/export")
        .unwrap_or_else(|| panic!("no export requested: {sent:?}"));
    let puts_before = sent[..export]
        .iter()
        .filter(|r| r.starts_with("PUT /retailer/offers/") && r.ends_with("/stock"))
        .count();
    // The read starts once no protective update is due or taken unsent:
    // every one is sent (the bound leaves room for the read's longest wait
    // on a slow machine). Without the wait the export goes out first.
    assert!(
        puts_before >= n - 8 * 25,
        "only {puts_before} of {n} protective PUTs before the export"
    );
    // Updates sent around the read are not drift.
    assert_eq!(run["counts"]["channel_differs"], 0, "{run}");
    assert_eq!(run["counts"]["missing_on_channel"], 0, "{run}");
    assert_eq!(run["fixed"], 0, "{run}");
    h.converged_at(OPENING - 1).await;
    h.stop().await;
}

/// Until nothing is pending and every offer but `STRAY-1` shows `quantity`,
/// asked of a `stockd serve` process.
async fn process_converged(client: &reqwest::Client, base: &str, sim: &RunningSim, quantity: i64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pending = get_json(client, base, "/v1/outbox?pending=true&limit=1").await["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let off = sim
            .listings()
            .iter()
            .filter(|l| l.sku != "STRAY-1" && l.quantity != quantity)
            .count();
        if !pending && off == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: pending {pending}, {off} offers off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_run_killed_with_sigkill_mid_way_completes_after_a_restart() {
    let sim = stockd_sim::bol::start(
        stockd_sim::bol::Config {
            client_id: tracked::CLIENT.into(),
            client_secret: tracked::SECRET.into(),
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("bol simulator");
    let dir = tempfile::tempdir().expect("dir");
    let db = sqlite_url(&dir);
    // Pages of 10 with a confirming read wherever an offer differs: the run
    // takes seconds, time enough to kill the process in the middle.
    let config = tracked::bol_config(
        dir.path(),
        &sim,
        "\n[reconciliation]\npage_size = 10\nconfirm_delay_ms = 300\n",
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // No idle connections: the server behind them is killed.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let n = 120;
    let skus: Vec<String> = (0..n).map(|i| format!("RK-{i:03}")).collect();
    let mut child = tracked::spawn_stockd(&config, &db, port);
    tracked::set_up(&client, &base, &sim, &skus).await;
    process_converged(&client, &base, &sim, 10).await;
    // One offer per page edited in the seller dashboard.
    for i in (3..n).step_by(10) {
        sim.edit_quantity(&format!("RK-{i:03}"), 2).expect("edit");
    }
    let started = client
        .post(format!("{base}/v1/reconciliations"))
        .json(&json!({"channel": BOL}))
        .send()
        .await
        .expect("stockd answers");
    assert_eq!(started.status(), 202);
    let id = started.json::<Value>().await.expect("json")["runs"][0]["id"]
        .as_i64()
        .expect("id");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = get_json(&client, &base, &format!("/v1/reconciliations/{id}")).await;
        if run["listings_checked"].as_u64().unwrap_or(0) >= 20 {
            assert_eq!(run["status"], "running", "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let unfinished = {
        let store = stockd_store::open(&db).await.expect("store");
        let run = store.recon_run(id).await.expect("run").expect("exists");
        store.close().await;
        run
    };
    assert_eq!(unfinished.status.as_str(), "running");
    assert!(unfinished.checked < n as u64, "{unfinished:?}");
    let mut child = tracked::spawn_stockd(&config, &db, port);
    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run = get_json(&client, &base, &format!("/v1/reconciliations/{id}")).await;
        if run["status"] == "completed" || run["status"] == "failed" {
            break run;
        }
        assert!(Instant::now() < deadline, "run unfinished: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["listings_checked"], n, "{run}");
    assert_eq!(run["counts"]["channel_differs"], 12, "{run}");
    assert_eq!(run["fixed"], 12, "{run}");
    process_converged(&client, &base, &sim, 10).await;
    assert_eq!(sim.stats().rate_limit_violations, 0);
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
}
