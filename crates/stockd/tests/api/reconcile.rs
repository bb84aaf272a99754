//! Reconciliation against the five channel simulators: back-office edits
//! behind stockd's back are found and fixed; a run stopped mid-way completes
//! after a restart; a run during traffic reports no false drift.

use crate::helpers::{config, free_port, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use stockd::demo::channels::{start, SimChannel, SimKind};
use stockd_sim::Faults;

struct Channels {
    app: Option<TestApp>,
    sims: Vec<SimChannel>,
    connections: Vec<stockd::outbound::dispatch::Connection>,
    port: u16,
    db: String,
    bulk_from: Option<usize>,
    _dir: tempfile::TempDir,
}

impl Channels {
    async fn start(skus: &[&str], opening: i64, page_size: usize) -> Channels {
        Channels::start_reading(skus, opening, page_size, None).await
    }

    /// `bulk_from`: every channel is read in bulk from this many listings.
    async fn start_reading(
        skus: &[&str],
        opening: i64,
        page_size: usize,
        bulk_from: Option<usize>,
    ) -> Channels {
        let port = free_port();
        let (sims, connections) = start(&SimKind::ALL, &format!("http://127.0.0.1:{port}"))
            .await
            .expect("simulators start");
        let dir = tempfile::tempdir().expect("dir");
        let mut h = Channels {
            app: None,
            sims,
            connections,
            port,
            db: sqlite_url(&dir),
            bulk_from,
            _dir: dir,
        };
        h.boot(page_size).await;
        let app = h.app();
        app.location("AMS", true, 1).await;
        app.variants(skus).await;
        for (i, sku) in skus.iter().enumerate() {
            app.events(receipt(&format!("open-{i}"), sku, "AMS", opening))
                .await;
        }
        for channel in &h.sims {
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
        h
    }

    async fn boot(&mut self, page_size: usize) {
        let dir = tempfile::tempdir().expect("dir");
        let mut cfg = config(self.db.clone());
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], self.port));
        cfg.extra_connections = self.connections.clone();
        cfg.reconcile.schedule = None;
        cfg.reconcile.page_size = page_size;
        cfg.reconcile.confirm_delay = Duration::from_millis(300);
        cfg.reconcile.bulk_read_from = self.bulk_from;
        // The Google simulator serves a processed product 100 ms after it.
        cfg.reconcile.settle_after_push = Some(Duration::from_millis(200));
        self.app = Some(TestApp::start(cfg, dir).await);
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("server running")
    }

    fn sim(&self, kind: SimKind) -> &SimChannel {
        self.sims.iter().find(|c| c.kind == kind).expect("sim")
    }

    /// Waits until nothing is pending and every channel shows what stockd wants.
    async fn converged(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let rows = self
                .app()
                .get("/v1/outbox?pending=false&limit=1000")
                .await
                .expect(200)
                .body["items"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let pending = rows
                .iter()
                .filter(|r| !r["dirty_since"].is_null() || r["parked"] == true)
                .count();
            let mut mismatches = Vec::new();
            for channel in &self.sims {
                // Listings made in the back office are left as they are.
                for listing in channel.sim.listings() {
                    if listing.sku.starts_with("STRAY-") {
                        continue;
                    }
                    let ok = rows.iter().any(|r| {
                        r["channel"] == channel.channel()
                            && r["sku"] == listing.sku.as_str()
                            && if channel.kind.shows_quantity() {
                                r["desired"]["quantity"] == listing.quantity
                            } else {
                                r["desired"]["availability"] == listing.availability.as_str()
                            }
                    });
                    if !ok {
                        mismatches.push(format!(
                            "{}/{}: {} {}",
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

    /// Starts a run of every channel and waits until all have finished.
    async fn reconcile_all(&self, within: Duration) -> Vec<Value> {
        let started = self
            .app()
            .post("/v1/reconciliations", json!({}))
            .await
            .expect(202);
        let ids: Vec<i64> = started.body["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids.len(), self.sims.len());
        self.wait_runs(&ids, within).await
    }

    async fn wait_runs(&self, ids: &[i64], within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let mut runs = Vec::new();
            for id in ids {
                runs.push(
                    self.app()
                        .get(&format!("/v1/reconciliations/{id}"))
                        .await
                        .expect(200)
                        .body,
                );
            }
            if runs
                .iter()
                .all(|r| r["status"] == "completed" || r["status"] == "failed")
            {
                return runs;
            }
            assert!(Instant::now() < deadline, "runs unfinished: {runs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        for channel in self.sims {
            channel.sim.shutdown().await;
        }
    }
}

#[tokio::test]
async fn back_office_edits_on_every_channel_are_found_and_fixed() {
    let skus = ["RC-1", "RC-2", "RC-3"];
    let mut h = Channels::start(&skus, 4, 250).await;
    edits_are_found_and_fixed(&h, false).await;
    the_figures_and_reports_show_the_run(&mut h).await;
    h.stop().await;
}

/// The same through each channel's bulk read (Shopify bulk operation,
/// WooCommerce collection pages, bol.com offers export, Amazon listings
/// report, Google products list), which the connectors take from a
/// threshold (lowered here to three listings).
#[tokio::test]
async fn back_office_edits_on_every_channel_are_found_by_its_bulk_read() {
    let skus = ["RC-1", "RC-2", "RC-3"];
    let h = Channels::start_reading(&skus, 4, 250, Some(3)).await;
    edits_are_found_and_fixed(&h, true).await;
    h.stop().await;
}

/// Every channel shows stockd's 4 units of RC-1..3; a back-office edit of
/// RC-2 on every channel is found by a run and fixed; a listing made in
/// the back office is reported when `bulk` (every run reads in bulk).
async fn edits_are_found_and_fixed(h: &Channels, bulk: bool) {
    h.converged(Duration::from_secs(60)).await.unwrap();
    // A first run finds no drift (Google's last pushes may still be
    // settling: pending, until they are not).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let runs = h.reconcile_all(Duration::from_secs(60)).await;
        for run in &runs {
            assert_eq!(run["status"], "completed", "{run}");
            assert_eq!(run["listings_checked"], 3, "{run}");
            assert_eq!(run["drift"], 0, "{run}");
        }
        if runs.iter().all(|r| r["counts"]["in_sync"] == 3) {
            break;
        }
        assert!(attempts < 20, "{runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A merchant sets RC-2 to 0 in every back office (Google: out of stock)
    // and lists a product of its own that stockd does not know.
    for channel in &h.sims {
        channel.sim.edit_quantity("RC-2", 0).expect("edit");
        channel.sim.add_listings(&[("STRAY-1".to_string(), 7)]);
    }
    let runs = h.reconcile_all(Duration::from_secs(60)).await;
    for run in &runs {
        let all = h
            .app()
            .get(&format!("/v1/reconciliations/{}/items", run["id"]))
            .await
            .expect(200)
            .body;
        assert_eq!(run["status"], "completed", "{run}");
        // Only a bulk read sees what stockd does not list.
        assert_eq!(run["counts"]["unknown_to_stockd"], u64::from(bulk), "{run}");
        assert_eq!(run["counts"]["channel_differs"], 1, "{run} {all}");
        assert_eq!(run["counts"]["in_sync"], 2, "{run}");
        assert_eq!(run["fixed"], 1, "{run}");
        let items = h
            .app()
            .get(&format!(
                "/v1/reconciliations/{}/items?class=channel_differs",
                run["id"]
            ))
            .await
            .expect(200)
            .body;
        let items = items["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["sku"], "RC-2");
        assert_eq!(items[0]["fixed"], true);
    }
    // The fix reaches every channel.
    h.converged(Duration::from_secs(60)).await.unwrap();
    let shop = h.sim(SimKind::Shopify).sim.listings();
    assert_eq!(
        shop.iter().find(|l| l.sku == "RC-2").map(|l| l.quantity),
        Some(4)
    );
    // Every push of RC-2 is in the audit trail, the fix included.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pushes = h
            .app()
            .get("/v1/pushes?sku=RC-2&limit=1000")
            .await
            .expect(200);
        let items = pushes.body["items"].as_array().cloned().unwrap_or_default();
        let channels: std::collections::BTreeSet<String> = items
            .iter()
            .filter(|a| a["outcome"] == "applied")
            .filter_map(|a| a["channel"].as_str().map(str::to_string))
            .collect();
        // Two pushes per channel at least: the first listing, the fix.
        let per_channel = |c: &str| items.iter().filter(|a| a["channel"] == c).count();
        if channels.len() == 5 && h.sims.iter().all(|s| per_channel(s.channel()) >= 2) {
            assert!(items.iter().all(|a| a["sku"] == "RC-2"), "{items:?}");
            assert!(items[0]["sent"]["quantity"].is_i64(), "{items:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After [`edits_are_found_and_fixed`]: the persisted figures (also after
/// a restart), the run reports, metrics and bad input.
async fn the_figures_and_reports_show_the_run(h: &mut Channels) {
    // Persisted figures: pushes and latency per channel, drift of the last
    // run against its target.
    let kpis = h.app().get("/v1/kpis").await.expect(200).body;
    assert!(kpis["channels"].is_array(), "{kpis}");
    let by_channel = kpis["by_channel"].as_array().expect("by_channel");
    assert_eq!(by_channel.len(), 5, "{kpis}");
    for k in by_channel {
        assert!(k["total"]["pushes"].as_u64().unwrap_or(0) >= 3, "{k}");
        assert!(k["total"]["latency_ms"]["p95"].is_f64(), "{k}");
        assert_eq!(k["targets"]["latency_p95_ms"]["target"], 5000.0, "{k}");
        let drift = &k["targets"]["drift_rate"];
        assert!(
            (drift["value"].as_f64().unwrap_or(0.0) - 1.0 / 3.0).abs() < 1e-9,
            "{k}"
        );
        assert_eq!(drift["pass"], false, "{k}");
        assert_eq!(k["daily"].as_array().map(Vec::len), Some(1), "{k}");
        // Each of the four targets: a verdict wherever there is a figure
        // (no order lines yet: no oversell rate, no verdict).
        for target in [
            "oversell_rate",
            "cancel_ratio",
            "drift_rate",
            "latency_p95_ms",
        ] {
            let t = &k["targets"][target];
            assert!(t["target"].is_f64(), "{target}: {k}");
            assert_eq!(t["pass"].is_boolean(), t["value"].is_f64(), "{target}: {k}");
        }
    }
    // The figures are the database's: the same after a restart (once the
    // audit writer has caught up, two reads in a row agree).
    let mut before = kpis["by_channel"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = h.app().get("/v1/kpis").await.expect(200).body["by_channel"].clone();
        if now == before {
            break;
        }
        assert!(Instant::now() < deadline, "figures still moving: {now}");
        before = now;
    }
    h.app.take().expect("app").stop().await;
    h.boot(250).await;
    let after = h.app().get("/v1/kpis").await.expect(200).body["by_channel"].clone();
    assert_eq!(after, before, "daily figures changed across a restart");
    h.app()
        .get("/v1/kpis?from=2026-13-01")
        .await
        .expect_error(400, "invalid_query");
    // Reports: the list, metrics, bad input.
    let list = h.app().get("/v1/reconciliations?limit=5").await.expect(200);
    assert_eq!(list.body["runs"].as_array().map(Vec::len), Some(5));
    assert!(list.body["next_before_id"].is_i64());
    let metrics = h.app().get("/metrics").await.expect(200);
    let text = metrics.text;
    assert!(
        text.contains(
            "stockd_reconciliation_listings{channel=\"shopify-main\",class=\"channel_differs\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("stockd_kpi_update_latency_ms_bucket{channel=\"woo-main\",le=\"+Inf\"}"),
        "{text}"
    );
    assert!(
        text.contains("stockd_kpi_drift_rate{channel=\"bol-nl\"}"),
        "{text}"
    );
    h.app()
        .post("/v1/reconciliations", json!({"channel": "nope"}))
        .await
        .expect_error(422, "channel_not_connected");
    h.app()
        .get("/v1/reconciliations/999999")
        .await
        .expect_error(404, "unknown_reconciliation");
    let run_id = list.body["runs"][0]["id"].clone();
    h.app()
        .get(&format!("/v1/reconciliations/{run_id}/items?class=bogus"))
        .await
        .expect_error(400, "invalid_query");
}

#[tokio::test]
async fn a_run_stopped_mid_way_completes_after_a_restart() {
    let skus: Vec<String> = (0..8).map(|i| format!("RS-{i}")).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let mut h = Channels::start(&refs, 3, 1).await;
    h.converged(Duration::from_secs(60)).await.unwrap();
    // Slow channel reads: one listing per page, 300 ms a request.
    let shop = h.sim(SimKind::Shopify);
    shop.sim.set_faults(Faults {
        latency_ms: 300,
        ..Default::default()
    });
    shop.sim.edit_quantity("RS-6", 1).expect("edit");
    let started = h
        .app()
        .post("/v1/reconciliations", json!({"channel": "shopify-main"}))
        .await
        .expect(202);
    let id = started.body["runs"][0]["id"].as_i64().expect("id");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = h
            .app()
            .get(&format!("/v1/reconciliations/{id}"))
            .await
            .expect(200)
            .body;
        if run["listings_checked"].as_u64().unwrap_or(0) >= 2 {
            assert_eq!(run["status"], "running", "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Down mid-run: the run stays unfinished in the database.
    h.app.take().expect("app").stop().await;
    h.sim(SimKind::Shopify).sim.set_faults(Faults::default());
    h.boot(1).await;
    let runs = h.wait_runs(&[id], Duration::from_secs(60)).await;
    let run = &runs[0];
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["listings_checked"], 8, "{run}");
    assert_eq!(run["total"], 8, "{run}");
    assert_eq!(run["counts"]["channel_differs"], 1, "{run}");
    assert_eq!(run["fixed"], 1, "{run}");
    h.converged(Duration::from_secs(60)).await.unwrap();
    // The daily figures were written before the restart and are still there.
    let kpis = h
        .app()
        .get("/v1/kpis?channel=shopify-main")
        .await
        .expect(200)
        .body;
    let shop = &kpis["by_channel"][0];
    assert!(shop["total"]["pushes"].as_u64().unwrap_or(0) >= 9, "{kpis}");
    h.stop().await;
}

#[tokio::test]
async fn a_run_during_traffic_reports_no_false_drift() {
    let skus: Vec<String> = (0..20).map(|i| format!("RT-{i}")).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let h = Channels::start(&refs, 50, 5).await;
    h.converged(Duration::from_secs(60)).await.unwrap();
    let app = h.app();
    let traffic = async {
        // Stock moves in stockd and customers buy on the channels while
        // the runs read.
        for round in 0..40 {
            let sku = &skus[round % skus.len()];
            app.events(receipt(&format!("t-{round}"), sku, "AMS", 1))
                .await;
            if round % 4 == 0 {
                let _ = h
                    .sim(SimKind::Shopify)
                    .sim
                    .buy(&[(skus[(round + 3) % skus.len()].clone(), 1)])
                    .await;
                let _ = h
                    .sim(SimKind::Woocommerce)
                    .sim
                    .buy(&[(skus[(round + 7) % skus.len()].clone(), 1)])
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    };
    let (runs, ()) = tokio::join!(h.reconcile_all(Duration::from_secs(90)), traffic);
    // Customers' orders are counted as order lines of their channel.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kpis = h
            .app()
            .get("/v1/kpis?channel=shopify-main")
            .await
            .expect(200)
            .body;
        if kpis["by_channel"][0]["total"]["order_lines"].as_u64() == Some(10) {
            assert_eq!(
                kpis["by_channel"][0]["targets"]["oversell_rate"]["pass"],
                true
            );
            break;
        }
        assert!(Instant::now() < deadline, "{kpis}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for run in &runs {
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["listings_checked"], 20, "{run}");
        assert_eq!(run["counts"]["channel_differs"], 0, "{run}");
        assert_eq!(run["counts"]["missing_on_channel"], 0, "{run}");
    }
    h.converged(Duration::from_secs(60)).await.unwrap();
    h.stop().await;
}

/// `stockd ARGS`, off the async runtime so the in-process server answers.
async fn stockd_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stockd"))
            .env_remove("STOCKD_SERVER")
            .env_remove("STOCKD_TOKEN")
            .env_remove("STOCKD_CONFIG")
            .env_remove("STOCKD_DATABASE_URL")
            .args(&args)
            .output()
    })
    .await
    .expect("join")
    .expect("stockd runs")
}

#[tokio::test]
async fn the_cli_starts_a_run_and_waits_with_a_progress_bar() {
    let skus = ["CL-1", "CL-2"];
    let h = Channels::start(&skus, 2, 250).await;
    h.converged(Duration::from_secs(60)).await.unwrap();
    h.sim(SimKind::Woocommerce)
        .sim
        .edit_quantity("CL-1", 9)
        .expect("edit");
    let url = h.app().base.clone();
    let out = stockd_cli(&[
        "reconcile",
        "--channel",
        "woo-main",
        "--wait",
        "--server",
        &url,
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let run = &report["runs"][0];
    assert_eq!(run["channel"], "woo-main", "{report}");
    assert_eq!(run["status"], "completed", "{report}");
    assert_eq!(run["counts"]["channel_differs"], 1, "{report}");
    assert_eq!(run["fixed"], 1, "{report}");
    assert!(stderr.contains("2/2 listings (1 run)"), "{stderr}");
    let refused = stockd_cli(&["reconcile", "--channel", "nope", "--server", &url]).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("channel_not_connected"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    h.stop().await;
}
