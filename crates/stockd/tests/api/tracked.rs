//! Acknowledgements that come later survive a restart: a bol stock update
//! the channel accepted (its process still PENDING) when stockd stops is
//! resolved by the tracker after the restart — from the process status
//! kept in the outbox — and never sent a second time. Checked on the bol
//! simulator's own process book, after a graceful stop of an in-process
//! server and after `kill -9` of a real `stockd serve`.

use crate::helpers::{config, free_port, receipt, sqlite_url, TestApp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_channels::bol;
use stockd_channels::{ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::RunningSim;

const BOL: &str = "bol";
pub(crate) const CLIENT: &str = "bol-tracked-client";
pub(crate) const SECRET: &str = "bol-tracked-secret";
/// How long the simulator keeps a stock update PENDING: long enough to stop
/// stockd while every update is accepted and none is decided.
const PROCESS_DELAY: Duration = Duration::from_secs(4);

async fn bol_sim() -> RunningSim {
    stockd_sim::bol::start(
        stockd_sim::bol::Config {
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            process_delay: PROCESS_DELAY,
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("bol simulator")
}

fn bol_connection(sim: &RunningSim) -> stockd::outbound::dispatch::Connection {
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(5)).expect("http client"));
    stockd::outbound::dispatch::Connection {
        channel: ChannelId::parse(BOL.to_string()).expect("id"),
        connector: Arc::new(bol::Bol::new(
            bol::Config {
                api_url: sim.base_url.clone(),
                login_url: sim.base_url.clone(),
                client_id: CLIENT.into(),
                client_secret: SECRET.into(),
                process_poll_interval: Duration::from_millis(200),
                ..Default::default()
            },
            transport,
        )),
    }
}

/// `GET` on a running stockd; the JSON answer.
pub(crate) async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("stockd answers")
        .json()
        .await
        .expect("json")
}

pub(crate) async fn send(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) {
    let reply = client
        .request(method, format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("stockd answers");
    assert!(reply.status().is_success(), "{path}: {}", reply.status());
}

/// Stock first, then the channel and its listings: each listing gets
/// exactly one update (to 10 units).
pub(crate) async fn set_up(
    client: &reqwest::Client,
    base: &str,
    sim: &RunningSim,
    skus: &[String],
) {
    use reqwest::Method;
    send(
        client,
        base,
        Method::PUT,
        "/v1/locations/AMS",
        json!({"name": "A"}),
    )
    .await;
    let variants: Vec<Value> = skus.iter().map(|s| json!({"sku": s})).collect();
    send(
        client,
        base,
        Method::POST,
        "/v1/variants",
        Value::Array(variants),
    )
    .await;
    for sku in skus {
        send(
            client,
            base,
            Method::POST,
            "/v1/events",
            receipt(&format!("r-{sku}"), sku, "AMS", 10),
        )
        .await;
    }
    send(
        client,
        base,
        Method::PUT,
        &format!("/v1/channels/{BOL}"),
        json!({"kind": "bol"}),
    )
    .await;
    let items: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 0)).collect();
    let listings: Vec<Value> = sim
        .add_listings(&items)
        .into_iter()
        .map(|l| json!({"sku": l.sku, "external": l.external}))
        .collect();
    send(
        client,
        base,
        Method::POST,
        &format!("/v1/channels/{BOL}/listings"),
        Value::Array(listings),
    )
    .await;
}

/// The bol outbox rows as `/v1/outbox` shows them.
async fn outbox(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let page = get_json(
        client,
        base,
        &format!("/v1/outbox?channel={BOL}&pending=false&limit=1000"),
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Until every listing's update is accepted by bol and awaits its process
/// status (none decided yet, checked on the simulator).
async fn wait_all_accepted(client: &reqwest::Client, base: &str, sim: &RunningSim, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = outbox(client, base).await;
        let accepted = rows
            .iter()
            .filter(|r| r["accepted"]["reference"].is_string())
            .count();
        if rows.len() == n && accepted == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the updates were never all accepted: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let processes = stockd_sim::bol::stock_processes(sim);
    assert_eq!(processes.len(), n, "one stock update per listing");
    assert!(
        processes.iter().all(|p| p.pending),
        "stopped while bol had decided none: {processes:?}"
    );
}

/// Until the channel shows 10 of every listing and the outbox is settled.
async fn wait_resolved(client: &reqwest::Client, base: &str, sim: &RunningSim, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = sim.listings().iter().filter(|l| l.quantity == 10).count();
        let rows = outbox(client, base).await;
        let settled = rows
            .iter()
            .filter(|r| r["dirty_since"].is_null() && r["accepted"].is_null())
            .count();
        if shown == n && settled == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not resolved after the restart: shown {shown}/{n}, rows {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One stock update per offer in the simulator's own process book.
fn assert_sent_once(sim: &RunningSim, n: usize) {
    let mut per_offer: BTreeMap<String, usize> = BTreeMap::new();
    for p in stockd_sim::bol::stock_processes(sim) {
        *per_offer.entry(p.offer_id).or_default() += 1;
    }
    assert_eq!(per_offer.len(), n, "{per_offer:?}");
    assert!(
        per_offer.values().all(|c| *c == 1),
        "an accepted update was sent again: {per_offer:?}"
    );
}

/// bol's acknowledgements resolved by this instance's tracker.
async fn acked_here(client: &reqwest::Client, base: &str) -> u64 {
    let kpis = get_json(client, base, "/v1/kpis").await;
    kpis["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["channel"] == BOL)
        .and_then(|c| c["items_acked"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_update_bol_accepted_before_a_graceful_stop_is_resolved_after_it_not_sent_again() {
    let sim = bol_sim().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = sqlite_url(&dir);
    let start = |sim: &RunningSim| {
        let mut cfg = config(db.clone());
        cfg.extra_connections = vec![bol_connection(sim)];
        TestApp::start(cfg, tempfile::tempdir().expect("dir"))
    };
    let client = reqwest::Client::new();
    let skus: Vec<String> = (0..5).map(|i| format!("TR-{i}")).collect();
    let app = start(&sim).await;
    set_up(&client, &app.base, &sim, &skus).await;
    wait_all_accepted(&client, &app.base, &sim, skus.len()).await;
    app.stop().await;
    // Nothing decided them while stockd was down but bol itself.
    let app = start(&sim).await;
    wait_resolved(&client, &app.base, &sim, skus.len()).await;
    assert_sent_once(&sim, skus.len());
    assert_eq!(
        acked_here(&client, &app.base).await,
        skus.len() as u64,
        "the restarted tracker resolved every accepted update"
    );
    assert_eq!(sim.stats().rate_limit_violations, 0);
    app.stop().await;
    sim.shutdown().await;
}

/// A `stockd.toml` in `dir` connecting the bol simulator (credentials
/// from the environment `spawn_stockd` sets), followed by `extra`.
pub(crate) fn bol_config(
    dir: &std::path::Path,
    sim: &RunningSim,
    extra: &str,
) -> std::path::PathBuf {
    let config = dir.join("stockd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[connectors.{BOL}]
kind = "bol"
url = "{url}"
login_url = "{url}"
client_id_env = "T_BOL_CLIENT"
client_secret_env = "T_BOL_SECRET"
{extra}"#,
            url = sim.base_url
        ),
    )
    .expect("config written");
    config
}

/// `stockd serve` as a child process connected to the bol simulator,
/// waiting until it listens.
pub(crate) fn spawn_stockd(config: &std::path::Path, db: &str, port: u16) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockd"))
        .env_remove("STOCKD_LISTEN")
        .env_remove("STOCKD_DATABASE_URL")
        .env_remove("STOCKD_CONFIG")
        .env("T_BOL_CLIENT", CLIENT)
        .env("T_BOL_SECRET", SECRET)
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
async fn an_update_bol_accepted_before_a_kill_9_of_stockd_serve_is_resolved_after_restart_not_sent_again(
) {
    let sim = bol_sim().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = sqlite_url(&dir);
    let config = bol_config(dir.path(), &sim, "");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // No idle connections: the server behind them is killed.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let skus: Vec<String> = (0..5).map(|i| format!("TK-{i}")).collect();
    let mut child = spawn_stockd(&config, &db, port);
    set_up(&client, &base, &sim, &skus).await;
    wait_all_accepted(&client, &base, &sim, skus.len()).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let mut child = spawn_stockd(&config, &db, port);
    wait_resolved(&client, &base, &sim, skus.len()).await;
    assert_sent_once(&sim, skus.len());
    assert_eq!(
        acked_here(&client, &base).await,
        skus.len() as u64,
        "the restarted tracker resolved every accepted update"
    );
    assert_eq!(sim.stats().rate_limit_violations, 0);
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
}
