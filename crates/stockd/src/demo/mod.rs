//! `stockd demo`: the whole pipeline in one process. An embedded SQLite store
//! in a temporary folder, the channel simulators, a sample catalog (variants
//! and kits) listed on every simulated channel, sample rules, a warehouse
//! feed (receipts, counts, returns) and simulated customers buying on every
//! channel — only what the channel shows. When the time is up (or on Ctrl-C)
//! the traffic stops, the pipeline drains, and a summary is printed:
//! events applied, pushes per channel, update latency, oversold lines, drift
//! between stockd and each channel, dead letters and rate-limit violations.

use crate::config::ServeConfig;
pub mod channels;

use crate::outbound::dispatch::UpdateClass;
use crate::outbound::stats::Rng;
use channels::{SimChannel, SimKind};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_sim::RunningSim;

/// What `stockd demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// `None`: until Ctrl-C.
    pub duration: Option<Duration>,
    pub variants: usize,
    pub kits: usize,
    /// Customer orders per second on each channel.
    pub orders_per_second: f64,
    /// Warehouse events per second.
    pub warehouse_per_second: f64,
    pub report: Option<std::path::PathBuf>,
    /// NATS URL: the warehouse traffic goes over NATS JetStream instead of HTTP.
    pub inbound_nats: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            duration: None,
            variants: 1_000,
            kits: 50,
            orders_per_second: 5.0,
            warehouse_per_second: 10.0,
            report: None,
            inbound_nats: None,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyReport {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One channel's latency: all updates, protective ones (they lower what the
/// channel shows) and the others.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ChannelLatencyReport {
    #[serde(flatten)]
    pub all: LatencyReport,
    pub protective: LatencyReport,
    pub other: LatencyReport,
}

/// The `--report` file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DemoReport {
    pub duration_secs: f64,
    pub events_applied: u64,
    pub pushes: BTreeMap<String, u64>,
    pub latency_ms: LatencyReport,
    pub latency_ms_by_channel: BTreeMap<String, ChannelLatencyReport>,
    pub oversold_lines: u64,
    pub order_lines: u64,
    pub orders_refused_not_shown: u64,
    pub drift_listings: u64,
    /// Listings whose channel differs from stockd after the drain, per channel.
    pub drift_by_channel: BTreeMap<String, u64>,
    pub listings: u64,
    pub dlq: u64,
    pub rate_limit_violations: u64,
    pub rate_limit_violations_by_channel: BTreeMap<String, u64>,
    pub drained: bool,
    /// The closing reconciliation of every channel, after one listing per
    /// channel was edited behind stockd's back.
    pub reconciliation: BTreeMap<String, ReconciliationReport>,
    /// The persisted figures of the day per channel, against their targets.
    pub kpis: BTreeMap<String, KpiReport>,
}

/// One channel's headline figures (persisted, `GET /v1/kpis`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KpiReport {
    pub oversell_rate: Option<f64>,
    pub cancel_ratio: Option<f64>,
    pub drift_rate: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

/// One channel's closing reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconciliationReport {
    pub listings_checked: u64,
    pub drift: u64,
    pub fixed: u64,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Start(#[from] crate::StartError),
}

fn setup(e: impl std::fmt::Display) -> DemoError {
    DemoError::Setup(e.to_string())
}

const LOCATIONS: [(&str, &str, i32); 2] =
    [("AMS", "Amsterdam DC", 1), ("RTM", "Rotterdam store", 2)];

/// The sample rules: a little safety stock, a share for the marketplaces,
/// pre-allocation at low stock (own shop first), and ETAs.
fn sample_rules() -> Value {
    json!({
        "defaults": {"safety_stock": 1},
        "channels": {
            SimKind::Bol.channel(): {"percent": 80},
            SimKind::Amazon.channel(): {"percent": 80},
        },
        "preallocation": {"low_stock_threshold": 3, "order": [
            SimKind::Shopify.channel(), SimKind::Woocommerce.channel(),
            SimKind::Bol.channel(), SimKind::Amazon.channel(),
        ]},
        "eta": {"backorder_within_days": 14, "handling_days": [1, 3]}
    })
}

/// Marketplaces with tight update limits list part of the catalog.
fn listed_on(kind: SimKind, index: usize) -> bool {
    match kind {
        SimKind::Amazon | SimKind::Gmc => index.is_multiple_of(10),
        _ => true,
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DemoError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(setup)?;
        let status = response.status();
        let text = response.text().await.map_err(setup)?;
        if !status.is_success() {
            return Err(DemoError::Setup(format!("{path}: {status}: {text}")));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(setup)
    }
    async fn put(&self, path: &str, body: Value) -> Result<Value, DemoError> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn post(&self, path: &str, body: Value) -> Result<Value, DemoError> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    async fn get(&self, path: &str) -> Result<Value, DemoError> {
        self.send(reqwest::Method::GET, path, None).await
    }
}

/// Runs the demo; `stop` ends it early (Ctrl-C).
pub async fn run(
    options: DemoOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<DemoReport, DemoError> {
    let dir = tempfile::tempdir().map_err(setup)?;
    let database_url = format!("sqlite://{}", dir.path().join("stockd-demo.db").display());
    let api_base = format!("http://{}", options.listen);
    let (sims, connections) = channels::start(&SimKind::ALL, &api_base)
        .await
        .map_err(DemoError::Setup)?;
    let server = crate::spawn(ServeConfig {
        extra_connections: connections,
        reconcile: crate::outbound::reconcile::ReconcileConfig {
            schedule: None,
            // The Google simulator serves a processed product after 100 ms.
            settle_after_push: Some(Duration::from_secs(2)),
            confirm_delay: Duration::from_millis(500),
            ..Default::default()
        },
        inbound: crate::inbound::InboundSettings {
            nats: options.inbound_nats.as_ref().map(|url| demo_nats(url)),
            ..Default::default()
        },
        ..ServeConfig::plain(options.listen, database_url)
    })
    .await?;
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: server.url(),
    });
    eprintln!(
        "stockd demo: API on {} (store in a temporary folder)",
        server.url()
    );
    eprintln!("  console: {}/ (open it in a browser)", server.url());
    for channel in &sims {
        eprintln!(
            "  {} simulator: {}/_sim/listings",
            channel.kind.kind(),
            channel.sim.base_url
        );
    }
    let skus = seed(&api, &sims, &options).await?;
    // The first push of every listing is set-up, not traffic: measured
    // updates start when it is done.
    let initial = Instant::now();
    let initial_drained = drain(&api, Duration::from_secs(180)).await?;
    let kpis = server.sync_kpis();
    let baseline: BTreeMap<(String, bool), usize> = kpis
        .figures()
        .iter()
        .flat_map(|f| {
            [UpdateClass::Protective, UpdateClass::Other].map(|class| {
                (
                    (
                        f.channel.as_str().to_string(),
                        class == UpdateClass::Protective,
                    ),
                    kpis.class_samples(&f.channel, class).len(),
                )
            })
        })
        .collect();
    eprintln!(
        "  catalog: {} variants and {} kits listed on {} channels, first sync {} in {:.1} s; traffic starts",
        options.variants,
        options.kits,
        sims.len(),
        if initial_drained { "done" } else { "NOT done" },
        initial.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let running = Arc::new(AtomicBool::new(true));
    let order_lines = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let sims: Vec<Arc<SimChannel>> = sims.into_iter().map(Arc::new).collect();
    let mut traffic = Vec::new();
    for (i, channel) in sims.iter().enumerate() {
        if !channel.kind.takes_orders() {
            continue;
        }
        traffic.push(tokio::spawn(customers(
            channel.clone(),
            skus.clone(),
            options.orders_per_second,
            running.clone(),
            order_lines.clone(),
            refused.clone(),
            0x5eed_0000 + i as u64,
        )));
    }
    let mut nats_js = None;
    let sink = match &options.inbound_nats {
        None => WarehouseSink::Http(api.clone()),
        Some(url) => {
            let client = async_nats::connect(url.as_str())
                .await
                .map_err(|e| DemoError::Setup(format!("cannot connect to NATS at {url}: {e}")))?;
            eprintln!("  warehouse traffic: published on NATS JetStream at {url}");
            let js = async_nats::jetstream::new(client);
            nats_js = Some(js.clone());
            WarehouseSink::Nats(Box::new(js), demo_nats(url).subjects[0].replace('>', "wms"))
        }
    };
    traffic.push(tokio::spawn(warehouse(
        sink,
        skus.clone(),
        options.warehouse_per_second,
        running.clone(),
    )));
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = stop => eprintln!("stopping: interrupted"),
    }
    running.store(false, Ordering::SeqCst);
    for task in traffic {
        let _ = task.await;
    }
    let traffic_secs = started.elapsed().as_secs_f64();
    if let (Some(js), Some(url)) = (&nats_js, &options.inbound_nats) {
        wait_consumed(js, &demo_nats(url).stream).await;
    }
    eprintln!("  traffic stopped after {traffic_secs:.1} s; draining the pipeline");
    let mut drained = drain(&api, Duration::from_secs(180)).await?;
    let reconciliation = reconcile(&api, &sims, &skus).await?;
    drained &= drain(&api, Duration::from_secs(180)).await?;

    let mut report = report(
        &api,
        &server,
        &sims,
        traffic_secs,
        &order_lines,
        &refused,
        drained,
        &baseline,
    )
    .await?;
    report.reconciliation = reconciliation;
    let kpis = api.get("/v1/kpis").await?;
    for k in kpis["by_channel"].as_array().into_iter().flatten() {
        let t = &k["targets"];
        report.kpis.insert(
            k["channel"].as_str().unwrap_or_default().to_string(),
            KpiReport {
                oversell_rate: t["oversell_rate"]["value"].as_f64(),
                cancel_ratio: t["cancel_ratio"]["value"].as_f64(),
                drift_rate: t["drift_rate"]["value"].as_f64(),
                latency_p95_ms: t["latency_p95_ms"]["value"].as_f64(),
            },
        );
    }
    server.shutdown().await.map_err(setup)?;
    for channel in sims {
        if let Ok(channel) = Arc::try_unwrap(channel) {
            channel.sim.shutdown().await;
        }
    }
    Ok(report)
}

/// Creates locations, variants, kits, channels, listings on the simulators
/// and in stockd, rules and opening stock. Returns the listed SKUs.
async fn seed(
    api: &Api,
    sims: &[SimChannel],
    options: &DemoOptions,
) -> Result<Vec<String>, DemoError> {
    for (id, name, priority) in LOCATIONS {
        api.put(
            &format!("/v1/locations/{id}"),
            json!({"name": name, "sellable": true, "priority": priority}),
        )
        .await?;
    }
    let variants: Vec<String> = (0..options.variants)
        .map(|i| format!("DEMO-{i:05}"))
        .collect();
    let kits: Vec<String> = (0..options.kits).map(|i| format!("KIT-{i:04}")).collect();
    let all: Vec<String> = variants.iter().chain(&kits).cloned().collect();
    let bodies: Vec<Value> = all
        .iter()
        .map(|sku| json!({"sku": sku, "title": format!("Demo {sku}")}))
        .collect();
    for chunk in bodies.chunks(1_000) {
        api.post("/v1/variants", Value::Array(chunk.to_vec()))
            .await?;
    }
    for (i, kit) in kits.iter().enumerate() {
        let a = &variants[(i * 2) % variants.len()];
        let b = &variants[(i * 2 + 1) % variants.len()];
        api.put(
            &format!("/v1/bundles/{kit}"),
            json!({"components": [{"sku": a, "qty": 2}, {"sku": b, "qty": 1}]}),
        )
        .await?;
    }
    for channel in sims {
        api.put(
            &format!("/v1/channels/{}", channel.channel()),
            json!({"kind": channel.kind.kind()}),
        )
        .await?;
    }
    api.put(
        "/v1/rules",
        json!({"rules": sample_rules(), "message": "demo rules"}),
    )
    .await?;
    // Opening stock before the listings: a channel's first update is then
    // the real state (Google counts every update against its daily budget).
    let mut rng = Rng::new(0xDE30_1234_5678_9ABC);
    let receipts: Vec<Value> = variants
        .iter()
        .enumerate()
        .map(|(i, sku)| {
            json!({"key": format!("open-{i}"), "type": "receipt", "sku": sku,
                   "location": LOCATIONS[i % 2].0, "qty": 5 + rng.below(40) as i64})
        })
        .collect();
    for chunk in receipts.chunks(1_000) {
        api.post("/v1/events", Value::Array(chunk.to_vec())).await?;
    }
    for channel in sims {
        let items: Vec<(String, i64)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| listed_on(channel.kind, *i))
            .map(|(_, s)| (s.clone(), 0))
            .collect();
        let created = channel.sim.add_listings(&items);
        let listings: Vec<Value> = created
            .iter()
            .map(|l| json!({"sku": l.sku, "external": l.external}))
            .collect();
        for chunk in listings.chunks(1_000) {
            api.post(
                &format!("/v1/channels/{}/listings", channel.channel()),
                Value::Array(chunk.to_vec()),
            )
            .await?;
        }
    }
    Ok(all)
}

/// Simulated customers on one channel: buy what the channel shows.
async fn customers(
    channel: Arc<SimChannel>,
    skus: Vec<String>,
    per_second: f64,
    running: Arc<AtomicBool>,
    order_lines: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    seed: u64,
) {
    let sim: &RunningSim = &channel.sim;
    let listed: Vec<String> = sim.listings().into_iter().map(|l| l.sku).collect();
    let skus = if listed.is_empty() { skus } else { listed };
    let mut rng = Rng::new(seed);
    let pause = Duration::from_secs_f64(1.0 / per_second.max(0.1));
    let mut placed: Vec<String> = Vec::new();
    while running.load(Ordering::SeqCst) {
        tokio::time::sleep(pause).await;
        let sku = skus[rng.below(skus.len() as u64) as usize].clone();
        let qty = 1 + rng.below(2) as i64;
        match sim.buy(&[(sku, qty)]).await {
            Ok(order) => {
                order_lines.fetch_add(1, Ordering::Relaxed);
                placed.push(order);
            }
            Err(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Now and then a customer cancels.
        if rng.below(20) == 0 && !placed.is_empty() {
            let at = rng.below(placed.len() as u64) as usize;
            let order = placed.swap_remove(at);
            let _ = sim.cancel_order(&order).await;
        }
    }
}

/// The demo's `[inbound.nats]`: a stream of its own per process.
fn demo_nats(url: &str) -> crate::inbound::NatsInboundSettings {
    let id = std::process::id();
    crate::inbound::NatsInboundSettings {
        url: url.to_string(),
        auth: crate::inbound::NatsAuth::None,
        stream: format!("STOCKD_DEMO_{id}"),
        subjects: vec![format!("stockd.demo.{id}.>")],
        durable: "stockd".into(),
        batch: crate::inbound::NATS_BATCH_DEFAULT,
        ack_wait: crate::inbound::NATS_ACK_WAIT_DEFAULT,
    }
}

/// Waits (up to 30 s) until stockd has acknowledged every warehouse message.
async fn wait_consumed(js: &async_nats::jetstream::Context, stream: &str) {
    for _ in 0..600 {
        let consumed = async {
            let stream = js.get_stream(stream).await.ok()?;
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer("stockd").await.ok()?;
            let info = consumer.info().await.ok()?;
            Some(info.num_pending == 0 && info.num_ack_pending == 0)
        }
        .await;
        if consumed == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the warehouse sends its events.
enum WarehouseSink {
    Http(Arc<Api>),
    /// A JetStream context and the subject to publish on.
    Nats(Box<async_nats::jetstream::Context>, String),
}

impl WarehouseSink {
    async fn send(&self, event: Value) -> Result<(), String> {
        match self {
            WarehouseSink::Http(api) => api
                .post("/v1/events", event)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            WarehouseSink::Nats(js, subject) => {
                let ack = js
                    .publish(subject.clone(), event.to_string().into())
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }
}

/// The warehouse feed: receipts, cycle counts and returns.
async fn warehouse(
    sink: WarehouseSink,
    skus: Vec<String>,
    per_second: f64,
    running: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(0x0A1B_2C3D_4E5F_6071);
    let pause = Duration::from_secs_f64(1.0 / per_second.max(0.1));
    let variants: Vec<&String> = skus.iter().filter(|s| s.starts_with("DEMO-")).collect();
    let mut n: u64 = 0;
    while running.load(Ordering::SeqCst) {
        tokio::time::sleep(pause).await;
        n += 1;
        let sku = variants[rng.below(variants.len() as u64) as usize];
        let location = LOCATIONS[rng.below(2) as usize].0;
        let event = match rng.below(10) {
            0 => json!({"key": format!("wh-count-{n}"), "type": "count", "sku": sku,
                        "location": location, "on_hand": 10 + rng.below(30) as i64}),
            1 => {
                json!({"key": format!("wh-ret-{n}"), "type": "return_received", "rma_id": format!("RMA-{n}"),
                        "sku": sku, "location": location, "qty": 1})
            }
            _ => json!({"key": format!("wh-rcpt-{n}"), "type": "receipt", "sku": sku,
                        "location": location, "qty": 1 + rng.below(10) as i64}),
        };
        if let Err(e) = sink.send(event).await {
            tracing::warn!(error = %e, "warehouse event refused");
        }
    }
}

/// Every outbox row (`pending`: only the lagging and dead-lettered ones).
async fn outbox_rows(api: &Api, pending: bool) -> Result<Vec<Value>, DemoError> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/outbox?pending={pending}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&after={c}"));
        }
        let page = api.get(&path).await?;
        rows.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(rows),
        }
    }
}

/// A listing whose update the change budget holds: stockd means the channel
/// to keep showing what it last acknowledged until the budget allows more.
fn held(row: &Value) -> bool {
    row["last_error"] == crate::outbound::dispatch::HELD_BY_BUDGET && row["parked"] != true
}

/// Waits until no listing lags its channel, but for updates the change
/// budget holds (or until `limit` passes).
async fn drain(api: &Api, limit: Duration) -> Result<bool, DemoError> {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let lagging = outbox_rows(api, true)
            .await?
            .iter()
            .filter(|r| !held(r))
            .count();
        if lagging == 0 {
            // Webhooks and polled orders still on their way may move desired
            // states once more: wait a quiet second beyond a full order-poll
            // cycle (an order a polled channel took but stockd has not seen
            // yet is drift that the next poll corrects).
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= channels::BOL_ORDER_POLL + Duration::from_secs(1) {
                return Ok(true);
            }
        } else {
            quiet_since = None;
        }
        if started.elapsed() > limit {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn percentiles(mut samples: Vec<f64>) -> LatencyReport {
    if samples.is_empty() {
        return LatencyReport::default();
    }
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| crate::outbound::stats::percentile(&samples, p);
    LatencyReport {
        p50: at(50.0),
        p95: at(95.0),
        p99: at(99.0),
    }
}

#[allow(clippy::too_many_arguments)]
async fn report(
    api: &Api,
    server: &crate::RunningServer,
    sims: &[Arc<SimChannel>],
    duration_secs: f64,
    order_lines: &AtomicU64,
    refused: &AtomicU64,
    drained: bool,
    baseline: &BTreeMap<(String, bool), usize>,
) -> Result<DemoReport, DemoError> {
    // The ledger: every applied event, and the oversell notes on orders.
    let mut events_applied = 0u64;
    let mut oversold_lines = 0u64;
    let mut after = 0u64;
    loop {
        let page = api
            .get(&format!("/v1/ledger?after_seq={after}&limit=1000"))
            .await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for row in &items {
            events_applied += 1;
            after = after.max(row["seq"].as_u64().unwrap_or(after));
            oversold_lines += row["notes"].as_array().map_or(0, |notes| {
                notes.iter().filter(|n| n["note"] == "oversell").count() as u64
            });
        }
        if items.len() < 1000 {
            break;
        }
    }
    // Drift: what each channel shows against what stockd means it to show —
    // the desired state, or for a listing the change budget holds, the state
    // last acknowledged (the quantity, or the availability where the channel
    // shows no quantity).
    let mut desired: BTreeMap<(String, String), (i64, String)> = BTreeMap::new();
    for row in outbox_rows(api, false).await? {
        let state = if held(&row) {
            &row["pushed"]
        } else {
            &row["desired"]
        };
        desired.insert(
            (
                row["channel"].as_str().unwrap_or_default().to_string(),
                row["sku"].as_str().unwrap_or_default().to_string(),
            ),
            (
                state["quantity"].as_i64().unwrap_or(0),
                state["availability"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        );
    }
    let mut drift = 0u64;
    let mut drift_by_channel: BTreeMap<String, u64> = BTreeMap::new();
    let mut listings = 0u64;
    let mut violations = 0u64;
    let mut violations_by_channel = BTreeMap::new();
    for channel in sims {
        let v = channel.sim.stats().rate_limit_violations;
        violations += v;
        violations_by_channel.insert(channel.channel().to_string(), v);
        let channel_drift = drift_by_channel
            .entry(channel.channel().to_string())
            .or_default();
        for listing in channel.sim.listings() {
            listings += 1;
            let key = (channel.channel().to_string(), listing.sku.clone());
            let Some((quantity, availability)) = desired.get(&key) else {
                drift += 1;
                *channel_drift += 1;
                continue;
            };
            let differs = if channel.kind.shows_quantity() {
                listing.quantity.max(0) != *quantity
            } else {
                listing.availability != *availability
            };
            if differs {
                tracing::warn!(channel = %key.0, sku = %key.1, shown = listing.quantity,
                    shown_availability = %listing.availability, desired = quantity,
                    desired_availability = %availability, "drift after drain");
                drift += 1;
                *channel_drift += 1;
            }
        }
    }
    let dlq = api.get("/v1/dlq?limit=1000").await?;
    let figures = server.sync_kpis().figures();
    let mut all_latency = Vec::new();
    let mut by_channel = BTreeMap::new();
    let mut pushes = BTreeMap::new();
    for f in &figures {
        pushes.insert(f.channel.as_str().to_string(), f.pushes);
        // Samples of the traffic only (the first sync's are skipped).
        let kpis = server.sync_kpis();
        let channel = f.channel.as_str().to_string();
        let of = |class: UpdateClass| -> Vec<f64> {
            let skip = baseline
                .get(&(channel.clone(), class == UpdateClass::Protective))
                .copied()
                .unwrap_or(0);
            kpis.class_samples(&f.channel, class)
                .into_iter()
                .skip(skip)
                .collect()
        };
        let protective = of(UpdateClass::Protective);
        let other = of(UpdateClass::Other);
        let samples: Vec<f64> = protective.iter().chain(&other).copied().collect();
        by_channel.insert(
            channel.clone(),
            ChannelLatencyReport {
                all: percentiles(samples.clone()),
                protective: percentiles(protective),
                other: percentiles(other),
            },
        );
        all_latency.extend(samples);
    }
    Ok(DemoReport {
        duration_secs,
        events_applied,
        pushes,
        latency_ms: percentiles(all_latency),
        latency_ms_by_channel: by_channel,
        oversold_lines,
        order_lines: order_lines.load(Ordering::Relaxed),
        orders_refused_not_shown: refused.load(Ordering::Relaxed),
        drift_listings: drift,
        drift_by_channel,
        listings,
        dlq: dlq["items"].as_array().map_or(0, |a| a.len() as u64),
        rate_limit_violations: violations,
        rate_limit_violations_by_channel: violations_by_channel,
        drained,
        reconciliation: BTreeMap::new(),
        kpis: BTreeMap::new(),
    })
}

/// A merchant edits one listing per channel in its back office (after the
/// Google simulator's last processing settled); then every channel is
/// reconciled and the runs are waited for.
async fn reconcile(
    api: &Api,
    sims: &[Arc<SimChannel>],
    skus: &[String],
) -> Result<BTreeMap<String, ReconciliationReport>, DemoError> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(sku) = skus.first() {
        for channel in sims {
            let Some(shown) = channel.sim.listings().into_iter().find(|l| &l.sku == sku) else {
                continue;
            };
            // Google shows availability: flip it; elsewhere add a few units.
            let edited = match channel.kind.shows_quantity() {
                true => shown.quantity + 7,
                false if shown.availability == "in_stock" => 0,
                false => 5,
            };
            channel.sim.edit_quantity(sku, edited).map_err(setup)?;
        }
    }
    let started = api.post("/v1/reconciliations", json!({})).await?;
    let ids: Vec<i64> = started["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut runs = Vec::new();
        for id in &ids {
            runs.push(api.get(&format!("/v1/reconciliations/{id}")).await?);
        }
        if runs
            .iter()
            .all(|r| r["status"] == "completed" || r["status"] == "failed")
        {
            eprintln!("  reconciled {} channels", runs.len());
            return Ok(runs
                .iter()
                .map(|r| {
                    (
                        r["channel"].as_str().unwrap_or_default().to_string(),
                        ReconciliationReport {
                            listings_checked: r["listings_checked"].as_u64().unwrap_or(0),
                            drift: r["drift"].as_u64().unwrap_or(0),
                            fixed: r["fixed"].as_u64().unwrap_or(0),
                        },
                    )
                })
                .collect());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Setup("reconciliation did not finish".into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The human summary printed at the end.
pub fn summary(report: &DemoReport) -> String {
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "stockd demo summary ({:.0} s of traffic)",
        report.duration_secs
    );
    let _ = writeln!(out, "  events applied          {}", report.events_applied);
    for (channel, n) in &report.pushes {
        let _ = writeln!(out, "  pushes {channel:<16} {n}");
    }
    let l = report.latency_ms;
    let _ = writeln!(
        out,
        "  latency ms p50/p95/p99  {:.1} / {:.1} / {:.1}",
        l.p50, l.p95, l.p99
    );
    let _ = writeln!(
        out,
        "  order lines             {} ({} refused: not shown)",
        report.order_lines, report.orders_refused_not_shown
    );
    let _ = writeln!(out, "  oversold lines          {}", report.oversold_lines);
    let _ = writeln!(
        out,
        "  drift listings          {} of {}",
        report.drift_listings, report.listings
    );
    let _ = writeln!(out, "  dead letters            {}", report.dlq);
    let _ = writeln!(
        out,
        "  rate-limit violations   {}",
        report.rate_limit_violations
    );
    for (channel, r) in &report.reconciliation {
        let _ = writeln!(
            out,
            "  reconciled {channel:<12} {} checked, {} drift, {} fixed",
            r.listings_checked, r.drift, r.fixed
        );
    }
    if !report.drained {
        let _ = writeln!(
            out,
            "  WARNING: the outbox did not drain within the time limit"
        );
    }
    out
}
