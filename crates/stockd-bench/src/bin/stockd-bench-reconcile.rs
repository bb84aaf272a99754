//! stockd-bench-reconcile: a reconciliation of N listings on one channel
//! against its simulator, and the KPI query over 90 days.
//!
//! One process: stockd on an embedded SQLite store (temporary folder) and
//! the WooCommerce simulator on loopback (WooCommerce has no export job: its
//! bulk read is paging, 100 ids per request). N variants are listed and
//! pushed once (the outbox drains), then 0.1 % of the listings are edited in
//! the simulator's back office and one reconciliation run is timed: wall
//! time, CPU time of this process (stockd and the simulator together, so an
//! upper bound for stockd), channel requests (from the simulator's
//! counters), and what it found and fixed.
//!
//! The KPI part writes 90 days × 5 channels of daily figures into the store
//! before the server starts, then times `GET /v1/kpis` over those 90 days.
//!
//! The confirmation delay is 250 ms here (2 s by default): every page with a
//! differing listing waits it once, which costs wall time, not CPU.
//!
//! Usage: stockd-bench-reconcile [--listings N] [--kpi-queries Q]

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd::config::ServeConfig;
use stockd::outbound::dispatch::Connection;
use stockd::outbound::stats::percentile;
use stockd_channels::{woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_store::kpis::{DayCounts, LATENCY_BUCKETS_MS};

struct Options {
    listings: usize,
    kpi_queries: usize,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        listings: 100_000,
        kpi_queries: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listings" => options.listings = value()?.parse()?,
            "--kpi-queries" => options.kpi_queries = value()?.parse()?,
            "--help" | "-h" => {
                println!("usage: stockd-bench-reconcile [--listings N] [--kpi-queries Q]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other} (see --help)"),
        }
    }
    Ok(options)
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line (12, 13 here),
    // in clock ticks of 1/100 s on Linux.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("{url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options()?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let woo = stockd_sim::woocommerce::start(
        stockd_sim::woocommerce::Config {
            consumer_key: "ck_bench".into(),
            consumer_secret: "cs_bench".into(),
            ..Default::default()
        },
        any,
    )
    .await?;
    let skus: Vec<String> = (0..options.listings)
        .map(|i| format!("RB-{i:07}"))
        .collect();
    let items: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 0)).collect();
    let listed = woo.add_listings(&items);

    let dir = tempfile::tempdir()?;
    let database_url = format!("sqlite://{}", dir.path().join("stockd.db").display());
    // 90 days × 5 channels of daily figures, written before the server starts.
    let today = chrono::Utc::now().date_naive();
    {
        let store = stockd_store::open(&database_url).await?;
        let mut days = Vec::new();
        for d in 0..90 {
            for c in ["shop", "woo", "bol", "amazon", "google"] {
                let mut latency = vec![0; LATENCY_BUCKETS_MS.len() + 1];
                for (i, n) in latency.iter_mut().enumerate() {
                    *n = ((d + i) % 7) as u64 * 100;
                }
                days.push((
                    ChannelId::parse(c.to_string())?,
                    today - chrono::Duration::days(d as i64),
                    DayCounts {
                        order_lines: 10_000,
                        stock_cancels: 12,
                        pushes: 50_000,
                        failures: 40,
                        dead_letters: 1,
                        latency,
                    },
                ));
            }
        }
        store.kpi_record(Vec::new(), days).await?;
        store.close().await;
    }

    let transport: Arc<dyn Transport> = Arc::new(
        ReqwestTransport::new(Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let connections = vec![Connection {
        channel: ChannelId::parse("woo".to_string())?,
        connector: Arc::new(woocommerce::WooCommerce::new(
            woocommerce::Config {
                site_url: woo.base_url.clone(),
                consumer_key: "ck_bench".into(),
                consumer_secret: "cs_bench".into(),
                webhook_secret: "bench".into(),
                rate_limit: None,
            },
            transport,
        )),
    }];
    let port = free_port()?;
    let server = stockd::spawn(ServeConfig {
        extra_connections: connections,
        reconcile: stockd::outbound::reconcile::ReconcileConfig {
            schedule: None,
            page_size: 1_000,
            // Each page with a differing listing waits this long before the
            // confirming read (wall time, not CPU).
            confirm_delay: Duration::from_millis(250),
            ..Default::default()
        },
        ..ServeConfig::plain(SocketAddr::from(([127, 0, 0, 1], port)), database_url)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = server.url();
    let client = reqwest::Client::new();
    use reqwest::Method;
    call(
        &client,
        Method::PUT,
        &format!("{base}/v1/locations/AMS"),
        Some(json!({"name": "AMS", "sellable": true, "priority": 1})),
    )
    .await?;
    for chunk in skus.chunks(5_000) {
        let variants: Vec<Value> = chunk.iter().map(|s| json!({"sku": s})).collect();
        call(
            &client,
            Method::POST,
            &format!("{base}/v1/variants"),
            Some(Value::Array(variants)),
        )
        .await?;
    }
    call(
        &client,
        Method::PUT,
        &format!("{base}/v1/channels/woo"),
        Some(json!({"kind": "woocommerce"})),
    )
    .await?;
    for chunk in listed.chunks(5_000) {
        let listings: Vec<Value> = chunk
            .iter()
            .map(|l| json!({"sku": l.sku, "external": l.external}))
            .collect();
        call(
            &client,
            Method::POST,
            &format!("{base}/v1/channels/woo/listings"),
            Some(Value::Array(listings)),
        )
        .await?;
    }
    // The first push of every listing, then quiet.
    let drain_started = Instant::now();
    loop {
        let page = call(
            &client,
            Method::GET,
            &format!("{base}/v1/outbox?pending=true&limit=1"),
            None,
        )
        .await?;
        if page["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        anyhow::ensure!(
            drain_started.elapsed() < Duration::from_secs(1_800),
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    // Back-office edits on 0.1 % of the listings.
    let edits = (options.listings / 1_000).max(1);
    for i in 0..edits {
        woo.edit_quantity(&skus[i * 1_000 % skus.len()], 5)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }

    let requests_before = woo.stats().requests;
    let cpu_before = cpu_secs();
    let started = Instant::now();
    let runs = call(
        &client,
        Method::POST,
        &format!("{base}/v1/reconciliations"),
        Some(json!({"channel": "woo"})),
    )
    .await?;
    let id = runs["runs"][0]["id"].as_i64().context("run id")?;
    let run = loop {
        let run = call(
            &client,
            Method::GET,
            &format!("{base}/v1/reconciliations/{id}"),
            None,
        )
        .await?;
        if run["status"] == "completed" || run["status"] == "failed" {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let requests = woo.stats().requests - requests_before;

    let from = today - chrono::Duration::days(89);
    let mut kpi_ms = Vec::new();
    for _ in 0..options.kpi_queries.max(1) {
        let t = Instant::now();
        let kpis = call(
            &client,
            Method::GET,
            &format!("{base}/v1/kpis?from={from}&to={today}"),
            None,
        )
        .await?;
        kpi_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            kpis["by_channel"].as_array().map(Vec::len) == Some(5),
            "unexpected KPI answer"
        );
    }
    kpi_ms.sort_by(f64::total_cmp);

    println!(
        "{}",
        json!({
            "bench": "reconcile",
            "listings": options.listings,
            "first_push_drain_secs": drain_secs,
            "edited": edits,
            "run": {
                "status": run["status"],
                "listings_checked": run["listings_checked"],
                "channel_differs": run["counts"]["channel_differs"],
                "fixed": run["fixed"],
                "wall_secs": wall,
                "process_cpu_secs": cpu,
                "channel_requests": requests,
            },
            "kpi_query_90_days_ms": {
                "p50": percentile(&kpi_ms, 50.0),
                "p95": percentile(&kpi_ms, 95.0),
                "max": kpi_ms.last().copied().unwrap_or(0.0),
                "queries": kpi_ms.len(),
            },
        })
    );
    server.shutdown().await?;
    woo.shutdown().await;
    Ok(())
}
