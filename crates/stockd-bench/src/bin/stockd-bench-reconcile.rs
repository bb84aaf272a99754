//! stockd-bench-reconcile: a reconciliation of N listings on bol.com through
//! its bulk path (the offers export), a baseline run of the same channel
//! kind through the paged path (one offer GET per listing), and the KPI
//! query over 90 days.
//!
//! stockd runs in this process on an embedded SQLite store (temporary
//! folder); each bol.com simulator runs in a child process (this program
//! started again with `--serve-bol-sim`), so the CPU time measured here is
//! stockd's (plus this program's few status polls), not the simulator's.
//!
//! Two channels are connected: `bol` with N listings, whose connector reads
//! the offers export from 1,000 listings on, and `bol-paged` with B
//! listings (the baseline), whose connector has no bulk read. Both push
//! through the synchronous v11 PATCH with its limit raised to 5,000/s on
//! both sides so the first push of N listings takes seconds, not the hours
//! bol's 50/s would take; the export keeps bol's 10 an hour and the
//! simulator's export takes `--export-delay-ms` to be written. After the
//! first pushes drain, 0.1 % of each channel's listings are edited in the
//! simulator's back office, and one run per channel is timed: wall time,
//! CPU seconds of this process, channel requests (stockd's count and the
//! simulator's), what it found and fixed, and the offers unknown to stockd
//! (10 offers are added to the bulk channel's simulator only).
//!
//! The KPI part writes 90 days × 5 channels of daily figures into the store
//! before the server starts, then times `GET /v1/kpis` over those 90 days.
//!
//! The confirmation delay is 250 ms here (2 s by default): every page with a
//! differing listing waits it once, which costs wall time, not CPU.
//!
//! Usage: stockd-bench-reconcile [--listings N] [--baseline-listings B]
//! [--export-delay-ms D] [--kpi-queries Q]

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd::config::ServeConfig;
use stockd::outbound::dispatch::Connection;
use stockd::outbound::stats::percentile;
use stockd_channels::bol::{self, RateLimit as BolLimit, RateLimits};
use stockd_channels::{ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_store::kpis::{DayCounts, LATENCY_BUCKETS_MS};

const CLIENT: &str = "bench-client";
const SECRET: &str = "bench-secret";
/// The raised v11 PATCH limit (simulator and connector), for the first push.
const PATCH_PER_SECOND: u32 = 5_000;
/// Offers in the bulk channel's simulator that stockd does not know.
const STRAY_OFFERS: usize = 10;

struct Options {
    listings: usize,
    baseline_listings: usize,
    export_delay_ms: u64,
    kpi_queries: usize,
    /// Child mode: serve one bol.com simulator and print its URL.
    serve_bol_sim: bool,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        listings: 100_000,
        baseline_listings: 1_000,
        export_delay_ms: 5_000,
        kpi_queries: 50,
        serve_bol_sim: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listings" => options.listings = value()?.parse()?,
            "--baseline-listings" => options.baseline_listings = value()?.parse()?,
            "--export-delay-ms" => options.export_delay_ms = value()?.parse()?,
            "--kpi-queries" => options.kpi_queries = value()?.parse()?,
            "--serve-bol-sim" => options.serve_bol_sim = true,
            "--help" | "-h" => {
                println!(
                    "usage: stockd-bench-reconcile [--listings N] [--baseline-listings B] \
                     [--export-delay-ms D] [--kpi-queries Q]"
                );
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

/// Child mode: one bol.com simulator with bol's published limits, the v11
/// PATCH raised to `PATCH_PER_SECOND`; prints `READY <url>` and serves until
/// its standard input closes (the parent ended).
async fn serve_bol_sim(options: &Options) -> Result<()> {
    let mut limits: Vec<stockd_sim::bol::RateLimit> = stockd_sim::bol::default_rate_limits()
        .into_iter()
        .filter(|r| !r.methods.iter().any(|m| m == "PATCH"))
        .collect();
    limits.push(stockd_sim::bol::RateLimit::new(
        "PATCH",
        "/retailer/offers/*",
        PATCH_PER_SECOND,
        stockd_sim::bol::TimeUnit::Seconds,
    ));
    let sim = stockd_sim::bol::start(
        stockd_sim::bol::Config {
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            rate_limits: limits,
            export_delay: Duration::from_millis(options.export_delay_ms),
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    println!("READY {}", sim.base_url);
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
    })
    .await?;
    sim.shutdown().await;
    Ok(())
}

/// A simulator in a child process.
struct SimProcess {
    child: std::process::Child,
    url: String,
}

impl SimProcess {
    fn start(options: &Options) -> Result<SimProcess> {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--serve-bol-sim",
                "--export-delay-ms",
                &options.export_delay_ms.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the simulator process")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("READY ")
            .context("the simulator did not start")?
            .to_string();
        Ok(SimProcess { child, url })
    }

    /// Channel API requests the simulator has answered.
    async fn requests(&self, client: &reqwest::Client) -> Result<u64> {
        let stats = call(
            client,
            reqwest::Method::GET,
            &format!("{}/_sim/stats", self.url),
            None,
        )
        .await?;
        stats["requests"].as_u64().context("simulator stats")
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connector(url: &str, export_from: Option<usize>, transport: Arc<dyn Transport>) -> bol::Bol {
    bol::Bol::new(
        bol::Config {
            api_url: url.to_string(),
            login_url: url.to_string(),
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            offers_api: bol::OffersApi::V11,
            process_poll_interval: Duration::from_millis(500),
            rate_limits: RateLimits {
                offer_update: BolLimit::per_second(PATCH_PER_SECOND),
                ..RateLimits::default()
            },
            export_from,
            ..Default::default()
        },
        transport,
    )
}

/// Lists `skus` on the simulator and on stockd's `channel`.
async fn list(
    client: &reqwest::Client,
    base: &str,
    sim: &SimProcess,
    channel: &str,
    skus: &[String],
) -> Result<()> {
    use reqwest::Method;
    call(
        client,
        Method::PUT,
        &format!("{base}/v1/channels/{channel}"),
        Some(json!({"kind": "bol"})),
    )
    .await?;
    for chunk in skus.chunks(5_000) {
        let offers: Vec<Value> = chunk
            .iter()
            .map(|s| json!({"sku": s, "quantity": 0}))
            .collect();
        let listed = call(
            client,
            Method::POST,
            &format!("{}/_sim/listings", sim.url),
            Some(Value::Array(offers)),
        )
        .await?;
        let listings: Vec<Value> = listed
            .as_array()
            .context("listed offers")?
            .iter()
            .map(|l| json!({"sku": l["sku"], "external": l["external"]}))
            .collect();
        call(
            client,
            Method::POST,
            &format!("{base}/v1/channels/{channel}/listings"),
            Some(Value::Array(listings)),
        )
        .await?;
    }
    Ok(())
}

/// Edits 0.1 % of `skus` (at least one) in the simulator's back office.
async fn edit(client: &reqwest::Client, sim: &SimProcess, skus: &[String]) -> Result<usize> {
    let edits = (skus.len() / 1_000).max(1);
    for i in 0..edits {
        let sku = &skus[i * 1_000 % skus.len()];
        call(
            client,
            reqwest::Method::POST,
            &format!("{}/_sim/listings/{sku}/quantity", sim.url),
            Some(json!({"quantity": 5})),
        )
        .await?;
    }
    Ok(edits)
}

/// One timed run of `channel`.
async fn timed_run(
    client: &reqwest::Client,
    base: &str,
    sim: &SimProcess,
    channel: &str,
    edited: usize,
) -> Result<Value> {
    use reqwest::Method;
    let sim_before = sim.requests(client).await?;
    let cpu_before = cpu_secs();
    let started = Instant::now();
    let runs = call(
        client,
        Method::POST,
        &format!("{base}/v1/reconciliations"),
        Some(json!({"channel": channel})),
    )
    .await?;
    let id = runs["runs"][0]["id"].as_i64().context("run id")?;
    let run = loop {
        let run = call(
            client,
            Method::GET,
            &format!("{base}/v1/reconciliations/{id}"),
            None,
        )
        .await?;
        if run["status"] == "completed" || run["status"] == "failed" {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let sim_requests = sim.requests(client).await? - sim_before;
    let checked = run["listings_checked"].as_u64().unwrap_or(0);
    Ok(json!({
        "channel": channel,
        "status": run["status"],
        "error": run["error"],
        "edited": edited,
        "listings_checked": checked,
        "channel_differs": run["counts"]["channel_differs"],
        "unknown_to_stockd": run["counts"]["unknown_to_stockd"],
        "pending": run["counts"]["pending"],
        "fixed": run["fixed"],
        "channel_requests": run["channel_reads"],
        "simulator_requests": sim_requests,
        "wall_secs": wall,
        "stockd_cpu_secs": cpu,
        "stockd_cpu_us_per_listing": if checked > 0 { cpu * 1e6 / checked as f64 } else { 0.0 },
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options()?;
    if options.serve_bol_sim {
        return serve_bol_sim(&options).await;
    }
    let bulk_sim = SimProcess::start(&options)?;
    let paged_sim = SimProcess::start(&options)?;
    let skus: Vec<String> = (0..options.listings)
        .map(|i| format!("RB-{i:07}"))
        .collect();
    let baseline_skus: Vec<String> = (0..options.baseline_listings)
        .map(|i| format!("RP-{i:07}"))
        .collect();

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
        ReqwestTransport::new(Duration::from_secs(120)).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let connections = vec![
        Connection {
            channel: ChannelId::parse("bol".to_string())?,
            connector: Arc::new(connector(&bulk_sim.url, Some(1_000), transport.clone())),
        },
        Connection {
            channel: ChannelId::parse("bol-paged".to_string())?,
            connector: Arc::new(connector(&paged_sim.url, None, transport)),
        },
    ];
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
    for chunk in skus.chunks(5_000).chain(baseline_skus.chunks(5_000)) {
        let variants: Vec<Value> = chunk.iter().map(|s| json!({"sku": s})).collect();
        call(
            &client,
            Method::POST,
            &format!("{base}/v1/variants"),
            Some(Value::Array(variants)),
        )
        .await?;
    }
    list(&client, &base, &bulk_sim, "bol", &skus).await?;
    list(&client, &base, &paged_sim, "bol-paged", &baseline_skus).await?;
    // Offers made in the seller dashboard, unknown to stockd.
    let strays: Vec<Value> = (0..STRAY_OFFERS)
        .map(|i| json!({"sku": format!("STRAY-{i}"), "quantity": 3}))
        .collect();
    call(
        &client,
        Method::POST,
        &format!("{}/_sim/listings", bulk_sim.url),
        Some(Value::Array(strays)),
    )
    .await?;
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
            drain_started.elapsed() < Duration::from_secs(3_600),
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let edited = edit(&client, &bulk_sim, &skus).await?;
    let baseline_edited = edit(&client, &paged_sim, &baseline_skus).await?;
    let bulk = timed_run(&client, &base, &bulk_sim, "bol", edited).await?;
    let paged = timed_run(&client, &base, &paged_sim, "bol-paged", baseline_edited).await?;

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
            kpis["by_channel"].as_array().map(Vec::len).unwrap_or(0) >= 5,
            "unexpected KPI answer"
        );
    }
    kpi_ms.sort_by(f64::total_cmp);

    println!(
        "{}",
        json!({
            "bench": "reconcile",
            "listings": options.listings,
            "baseline_listings": options.baseline_listings,
            "export_delay_ms": options.export_delay_ms,
            "first_push_drain_secs": drain_secs,
            "bulk_run": bulk,
            "paged_baseline_run": paged,
            "kpi_query_90_days_ms": {
                "p50": percentile(&kpi_ms, 50.0),
                "p95": percentile(&kpi_ms, 95.0),
                "max": kpi_ms.last().copied().unwrap_or(0.0),
                "queries": kpi_ms.len(),
            },
        })
    );
    server.shutdown().await?;
    bulk_sim.stop();
    paged_sim.stop();
    Ok(())
}
