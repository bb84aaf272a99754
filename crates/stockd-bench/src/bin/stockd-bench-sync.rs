//! stockd-bench-sync: end-to-end update latency, from the moment stockd
//! receives an event to the moment the channel acknowledges the update.
//!
//! One process: stockd on an embedded SQLite store (temporary folder) with
//! its dispatcher, and the Shopify and WooCommerce simulators on loopback.
//! A catalog of N variants is listed on both channels; a load generator then
//! posts receipts on random variants over HTTP at a fixed rate for a fixed
//! time, and the latency of every acknowledged update is taken from
//! stockd's own accounting (the same figures as `/v1/kpis`).
//!
//! `--mode five` (the default): all five channels as `stockd demo` runs
//! them (Shopify, WooCommerce, bol.com, Amazon, Google), each simulator at
//! its channel's published limits. Every variant is listed on Shopify,
//! WooCommerce and bol.com; Amazon and Google list one in 50 (marketplace
//! sellers list a subset; Google's product-input rate and Amazon's patch
//! rate of 5/s could not carry more). The load mixes receipts (updates
//! that raise what channels show) and adjustments down (protective
//! updates). Reported per channel: the first sync's time, protective and
//! other latency (measured only after every channel's first sync), the
//! drain time after the load, drift (what the simulator shows against what
//! stockd means it to show), dead letters and rate-limit violations.
//!
//! `--mode two`: Shopify and WooCommerce only, receipts only, two runs on
//! fresh stores and simulators:
//! - `open`: simulators that do not throttle (a very large Shopify bucket);
//! - `throttled`: Shopify's standard plan (1,000-point bucket, 50/s restore),
//!   where the dispatcher must pace itself; it reports the latency and
//!   whether the channel's limit was ever broken.
//!
//! Usage: stockd-bench-sync [--mode five|two] [--variants N] [--rate EVENTS_PER_S] [--seconds S]

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd::config::ServeConfig;
use stockd::outbound::dispatch::{Connection, UpdateClass};
use stockd::outbound::stats::percentile;
use stockd_channels::{shopify, woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;

/// Google lists one variant in this many (its product-input rate).
const GOOGLE_EVERY: usize = 50;
/// Amazon lists one variant in this many: a marketplace seller lists a
/// subset, and at 200 events/s half of them down, one in 10 would ask
/// 10 protective patches/s of a 5/s limit.
const AMAZON_EVERY: usize = 50;
/// How long the first sync and the drain may take.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

struct Options {
    five: bool,
    variants: usize,
    rate: f64,
    seconds: f64,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        five: true,
        variants: 10_000,
        rate: 1_000.0,
        seconds: 20.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--variants" => options.variants = value()?.parse()?,
            "--mode" => {
                options.five = match value()?.as_str() {
                    "five" => true,
                    "two" => false,
                    other => anyhow::bail!("--mode five|two, not {other}"),
                }
            }
            "--rate" => options.rate = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--help" | "-h" => {
                println!(
                    "usage: stockd-bench-sync [--mode five|two] [--variants N] [--rate EVENTS_PER_S] [--seconds S]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other} (see --help)"),
        }
    }
    // A realistic peak for five channels: 200 events/s (unless given).
    if options.five && !std::env::args().any(|a| a == "--rate") {
        options.rate = 200.0;
    }
    Ok(options)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Result<()> {
    let response = client.post(url).json(&body).send().await?;
    if !response.status().is_success() {
        anyhow::bail!("{url}: {} {}", response.status(), response.text().await?);
    }
    Ok(())
}

async fn run(options: &Options, throttled: bool) -> Result<Value> {
    let port = free_port()?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (bucket, restore) = if throttled {
        (1_000.0, 50.0)
    } else {
        (1.0e12, 1.0e12)
    };
    let shop = stockd_sim::shopify::start(
        stockd_sim::shopify::Config {
            access_token: "bench".into(),
            webhook_secret: "bench".into(),
            bucket_size: bucket,
            restore_rate: restore,
            max_query_cost: bucket.max(1_000.0),
            ..Default::default()
        },
        any,
    )
    .await?;
    let woo = stockd_sim::woocommerce::start(
        stockd_sim::woocommerce::Config {
            consumer_key: "ck_bench".into(),
            consumer_secret: "cs_bench".into(),
            ..Default::default()
        },
        any,
    )
    .await?;
    let transport: Arc<dyn Transport> = Arc::new(
        ReqwestTransport::new(Duration::from_secs(10)).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let connections = vec![
        Connection {
            channel: ChannelId::parse("shop".to_string())?,
            connector: Arc::new(shopify::Shopify::new(
                shopify::Config {
                    shop_url: shop.base_url.clone(),
                    access_token: "bench".into(),
                    webhook_secret: "bench".into(),
                    bucket_size: bucket,
                    restore_rate: restore,
                    ..Default::default()
                },
                transport.clone(),
            )),
        },
        Connection {
            channel: ChannelId::parse("woo".to_string())?,
            connector: Arc::new(woocommerce::WooCommerce::new(
                woocommerce::Config {
                    site_url: woo.base_url.clone(),
                    consumer_key: "ck_bench".into(),
                    consumer_secret: "cs_bench".into(),
                    webhook_secret: "bench".into(),
                    rate_limit: None,
                    ..Default::default()
                },
                transport,
            )),
        },
    ];
    let dir = tempfile::tempdir()?;
    let server = stockd::spawn(ServeConfig {
        extra_connections: connections,
        ..ServeConfig::plain(
            SocketAddr::from(([127, 0, 0, 1], port)),
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
    })
    .await?;
    let base = server.url();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{base}{path}");

    // Catalog, channels, listings on both simulators, opening stock.
    reqwest::Client::new()
        .put(url("/v1/locations/AMS"))
        .json(&json!({"name": "AMS", "sellable": true, "priority": 1}))
        .send()
        .await?;
    let skus: Vec<String> = (0..options.variants).map(|i| format!("B-{i:06}")).collect();
    for chunk in skus.chunks(5_000) {
        let body: Vec<Value> = chunk.iter().map(|s| json!({"sku": s})).collect();
        post(&client, &url("/v1/variants"), Value::Array(body)).await?;
    }
    for (channel, kind, sim) in [("shop", "shopify", &shop), ("woo", "woocommerce", &woo)] {
        client
            .put(url(&format!("/v1/channels/{channel}")))
            .json(&json!({"kind": kind}))
            .send()
            .await?;
        let created = sim.add_listings(&skus.iter().map(|s| (s.clone(), 0)).collect::<Vec<_>>());
        for chunk in created.chunks(5_000) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|l| json!({"sku": l.sku, "external": l.external}))
                .collect();
            post(
                &client,
                &url(&format!("/v1/channels/{channel}/listings")),
                Value::Array(body),
            )
            .await?;
        }
    }
    // Let the first sync of every listing finish before measuring.
    let settle = Instant::now();
    loop {
        let page: Value = client
            .get(url("/v1/outbox?pending=true&limit=1"))
            .send()
            .await?
            .json()
            .await?;
        if page["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        if settle.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the initial sync did not finish");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kpis = server.sync_kpis();
    let baseline = baseline(&kpis);

    // The load: receipts at a fixed rate, sent every 10 ms.
    let tick = Duration::from_millis(10);
    let ticks = (options.seconds / tick.as_secs_f64()) as usize;
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sent = 0usize;
    let mut in_flight = Vec::new();
    for t in 0..ticks {
        next += tick;
        let events: Vec<Value> = (0..due_in_tick(t, options.rate, tick))
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let sku = &skus[(seed % skus.len() as u64) as usize];
                json!({"key": format!("load-{t}-{i}"), "type": "receipt", "sku": sku,
                       "location": "AMS", "qty": 1 + (seed >> 40) % 5})
            })
            .collect();
        if events.is_empty() {
            tokio::time::sleep_until(next).await;
            continue;
        }
        sent += events.len();
        let client = client.clone();
        let target = url("/v1/events");
        in_flight.push(tokio::spawn(async move {
            post(&client, &target, Value::Array(events)).await
        }));
        tokio::time::sleep_until(next).await;
    }
    for task in in_flight {
        task.await??;
    }
    let load_secs = started.elapsed().as_secs_f64();
    // Drain.
    let drain_start = Instant::now();
    loop {
        let page: Value = client
            .get(url("/v1/outbox?pending=true&limit=1"))
            .send()
            .await?
            .json()
            .await?;
        if page["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        if drain_start.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();

    let mut per_channel = serde_json::Map::new();
    let mut all = Vec::new();
    for (channel, _) in &baseline {
        let mut samples = since(&kpis, &baseline, channel, UpdateClass::Protective);
        samples.extend(since(&kpis, &baseline, channel, UpdateClass::Other));
        samples.sort_by(f64::total_cmp);
        per_channel.insert(
            channel.as_str().to_string(),
            json!({"updates": samples.len(), "p50_ms": percentile(&samples, 50.0),
                   "p95_ms": percentile(&samples, 95.0), "p99_ms": percentile(&samples, 99.0)}),
        );
        all.extend(samples);
    }
    all.sort_by(f64::total_cmp);
    let figures = kpis.figures();
    let pushes: Value = figures
        .iter()
        .map(|f| (f.channel.as_str().to_string(), json!(f.pushes)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let result = json!({
        "events": sent,
        "events_per_s": (sent as f64 / load_secs).round(),
        "updates_acked": all.len(),
        "latency_ms": {"p50": percentile(&all, 50.0), "p95": percentile(&all, 95.0), "p99": percentile(&all, 99.0)},
        "by_channel": per_channel,
        "calls": pushes,
        "drain_after_load_s": (drain_secs * 1000.0).round() / 1000.0,
        "rate_limit_violations": shop.stats().rate_limit_violations + woo.stats().rate_limit_violations,
    });
    server.shutdown().await?;
    shop.shutdown().await;
    woo.shutdown().await;
    Ok(result)
}

/// Latency samples kept per channel and class before the load.
fn baseline(kpis: &stockd::outbound::dispatch::SyncKpis) -> Vec<(ChannelId, [usize; 2])> {
    kpis.figures()
        .iter()
        .map(|f| {
            (
                f.channel.clone(),
                [
                    kpis.class_samples(&f.channel, UpdateClass::Protective)
                        .len(),
                    kpis.class_samples(&f.channel, UpdateClass::Other).len(),
                ],
            )
        })
        .collect()
}

/// The samples of one class taken since `baseline`.
fn since(
    kpis: &stockd::outbound::dispatch::SyncKpis,
    baseline: &[(ChannelId, [usize; 2])],
    channel: &ChannelId,
    class: UpdateClass,
) -> Vec<f64> {
    let index = usize::from(class != UpdateClass::Protective);
    let skip = baseline
        .iter()
        .find(|(c, _)| c == channel)
        .map_or(0, |(_, n)| n[index]);
    kpis.class_samples(channel, class)
        .into_iter()
        .skip(skip)
        .collect()
}

fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    json!({"updates": samples.len(), "p50_ms": percentile(&samples, 50.0),
           "p95_ms": percentile(&samples, 95.0), "p99_ms": percentile(&samples, 99.0)})
}

/// A channel's outbox rows (`pending`: only lagging and dead-lettered),
/// page after page while `more` says so.
async fn outbox_rows(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    pending: bool,
    more: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("{base}/v1/outbox?channel={channel}&pending={pending}&limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page: Value = client.get(path).send().await?.json().await?;
        rows.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_str() {
            Some(next) if more(&rows) => after = Some(next.to_string()),
            _ => return Ok(rows),
        }
    }
}

/// A listing whose update the change budget holds (not lagging: stockd
/// means the channel to keep what it last acknowledged).
fn held(row: &Value) -> bool {
    row["last_error"] == stockd::outbound::dispatch::HELD_BY_BUDGET && row["parked"] != true
}

/// Waits until no listing lags on any of `channels` (updates the change
/// budget holds aside), or `limit`; returns per channel the seconds until
/// it first had none (`None`: not within `limit`).
async fn drain_times(
    client: &reqwest::Client,
    base: &str,
    channels: &[&str],
    limit: Duration,
) -> Result<Vec<Option<f64>>> {
    let started = Instant::now();
    let mut done: Vec<Option<f64>> = vec![None; channels.len()];
    while done.iter().any(Option::is_none) && started.elapsed() <= limit {
        for (channel, done) in channels.iter().zip(done.iter_mut()) {
            if done.is_some() {
                continue;
            }
            // Reading on only while every row so far is held (a lagging
            // one answers the question).
            let rows =
                outbox_rows(client, base, channel, true, |rows| rows.iter().all(held)).await?;
            if rows.iter().all(held) {
                *done = Some((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(done)
}

/// Listings whose simulator shows something else than stockd means it to
/// show: the desired state, or for a listing the change budget holds, the
/// state last acknowledged (the quantity, or the availability where the
/// channel shows no quantity).
async fn drift(
    client: &reqwest::Client,
    base: &str,
    channel: &stockd::demo::channels::SimChannel,
) -> Result<u64> {
    let mut meant = std::collections::BTreeMap::new();
    for row in outbox_rows(client, base, channel.channel(), false, |_| true).await? {
        let state = if held(&row) {
            row["pushed"].clone()
        } else {
            row["desired"].clone()
        };
        meant.insert(row["sku"].as_str().unwrap_or_default().to_string(), state);
    }
    let mut drifting = 0;
    for listing in channel.sim.listings() {
        let differs = match meant.get(&listing.sku) {
            None => true,
            Some(state) if channel.kind.shows_quantity() => {
                state["quantity"].as_i64() != Some(listing.quantity.max(0))
            }
            Some(state) => state["availability"].as_str() != Some(listing.availability.as_str()),
        };
        drifting += u64::from(differs);
    }
    Ok(drifting)
}

/// Events due in tick `t` at `rate` per second: a rate below one event per
/// tick spreads its events over the ticks instead of rounding up to one.
fn due_in_tick(t: usize, rate: f64, tick: Duration) -> usize {
    let until = |n: usize| (n as f64 * rate * tick.as_secs_f64()).floor();
    (until(t + 1) - until(t)) as usize
}

/// All five channels at their published limits (Amazon and Google list a
/// subset), receipts and adjustments down at a fixed rate.
async fn run_five(options: &Options) -> Result<Value> {
    use stockd::demo::channels::{start, SimKind};
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let (sims, connections) = start(&SimKind::ALL, &base)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile::tempdir()?;
    let server = stockd::spawn(ServeConfig {
        extra_connections: connections,
        ..ServeConfig::plain(
            SocketAddr::from(([127, 0, 0, 1], port)),
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
    })
    .await?;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{base}{path}");
    client
        .put(url("/v1/locations/AMS"))
        .json(&json!({"name": "AMS", "sellable": true, "priority": 1}))
        .send()
        .await?;
    let skus: Vec<String> = (0..options.variants).map(|i| format!("B-{i:06}")).collect();
    for chunk in skus.chunks(5_000) {
        let body: Vec<Value> = chunk.iter().map(|s| json!({"sku": s})).collect();
        post(&client, &url("/v1/variants"), Value::Array(body)).await?;
    }
    // Opening stock, so adjustments down stay above zero mostly.
    for (n, chunk) in skus.chunks(1_000).enumerate() {
        let body: Vec<Value> = chunk
            .iter()
            .map(|s| {
                json!({"key": format!("open-{n}-{s}"), "type": "receipt", "sku": s,
                            "location": "AMS", "qty": 40})
            })
            .collect();
        post(&client, &url("/v1/events"), Value::Array(body)).await?;
    }
    for channel in &sims {
        client
            .put(url(&format!("/v1/channels/{}", channel.channel())))
            .json(&json!({"kind": channel.kind.kind()}))
            .send()
            .await?;
        // Google's product-input rate (about 2/s in the simulator, as
        // published) cannot carry a first sync of 10,000 products in a
        // bench run, and a marketplace seller lists a subset on Amazon.
        let every = match channel.kind {
            SimKind::Gmc => GOOGLE_EVERY,
            SimKind::Amazon => AMAZON_EVERY,
            _ => 1,
        };
        let listed: Vec<(String, i64)> =
            skus.iter().step_by(every).map(|s| (s.clone(), 0)).collect();
        let created = channel.sim.add_listings(&listed);
        for chunk in created.chunks(5_000) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|l| json!({"sku": l.sku, "external": l.external}))
                .collect();
            post(
                &client,
                &url(&format!("/v1/channels/{}/listings", channel.channel())),
                Value::Array(body),
            )
            .await?;
        }
    }
    let ids: Vec<&str> = sims.iter().map(|c| c.channel()).collect();
    let settle = Instant::now();
    let first_sync = drain_times(&client, &base, &ids, PHASE_LIMIT).await?;
    let first_sync_s = settle.elapsed().as_secs_f64();
    let kpis = server.sync_kpis();
    let baseline = baseline(&kpis);

    // The load: every 10 ms a batch; half receipts, half adjustments down.
    let tick = Duration::from_millis(10);
    let ticks = (options.seconds / tick.as_secs_f64()) as usize;
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sent = 0usize;
    let mut in_flight = Vec::new();
    for t in 0..ticks {
        next += tick;
        let events: Vec<Value> = (0..due_in_tick(t, options.rate, tick))
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let sku = &skus[(seed % skus.len() as u64) as usize];
                let qty = 1 + (seed >> 40) % 3;
                if (seed >> 20).is_multiple_of(2) {
                    json!({"key": format!("load-{t}-{i}"), "type": "receipt", "sku": sku,
                           "location": "AMS", "qty": qty})
                } else {
                    json!({"key": format!("load-{t}-{i}"), "type": "adjust", "sku": sku,
                           "location": "AMS", "delta": -(qty as i64), "reason": "bench"})
                }
            })
            .collect();
        if events.is_empty() {
            tokio::time::sleep_until(next).await;
            continue;
        }
        sent += events.len();
        let client = client.clone();
        let target = url("/v1/events");
        in_flight.push(tokio::spawn(async move {
            post(&client, &target, Value::Array(events)).await
        }));
        tokio::time::sleep_until(next).await;
    }
    for task in in_flight {
        task.await??;
    }
    let load_secs = started.elapsed().as_secs_f64();
    let drain_start = Instant::now();
    let drain = drain_times(&client, &base, &ids, PHASE_LIMIT).await?;
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let dlq: Value = client
        .get(url("/v1/dlq?limit=1000"))
        .send()
        .await?
        .json()
        .await?;
    let dead_letters = dlq["items"].as_array().cloned().unwrap_or_default();

    let figures = kpis.figures();
    let mut per_channel = serde_json::Map::new();
    for (n, channel) in sims.iter().enumerate() {
        let id = ChannelId::parse(channel.channel().to_string())?;
        let figure = figures.iter().find(|f| f.channel == id);
        per_channel.insert(
            channel.channel().to_string(),
            json!({
                "listings": channel.sim.listings().len(),
                "first_sync_s": first_sync[n],
                "protective": summary(since(&kpis, &baseline, &id, UpdateClass::Protective)),
                "other": summary(since(&kpis, &baseline, &id, UpdateClass::Other)),
                "drain_after_load_s": drain[n],
                "drift": drift(&client, &base, channel).await?,
                "dlq": dead_letters.iter().filter(|d| d["channel"] == channel.channel()).count(),
                "calls": figure.map_or(0, |f| f.pushes),
                "held_by_budget": figure.map_or(0, |f| f.held_by_budget),
                "rate_limit_violations": channel.sim.stats().rate_limit_violations,
            }),
        );
    }
    let result = json!({
        "events": sent,
        "events_per_s": (sent as f64 / load_secs).round(),
        "first_sync_s": (first_sync_s * 10.0).round() / 10.0,
        "first_sync_done": first_sync.iter().all(Option::is_some),
        "by_channel": per_channel,
        "drained": drain.iter().all(Option::is_some),
        "dlq": dead_letters.len(),
        "drain_after_load_s": (drain_secs * 1000.0).round() / 1000.0,
    });
    server.shutdown().await?;
    for channel in sims {
        channel.sim.shutdown().await;
    }
    Ok(result)
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options()?;
    if options.five {
        let five = run_five(&options).await?;
        let line = json!({
            "bench": "sync_five_channels",
            "google_lists_one_in": GOOGLE_EVERY,
            "amazon_lists_one_in": AMAZON_EVERY,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "variants": options.variants,
            "rate_events_per_s": options.rate,
            "seconds": options.seconds,
            "five": five,
        });
        println!("{line}");
        return Ok(());
    }
    let open = run(&options, false).await?;
    let throttled = run(&options, true).await?;
    let line = json!({
        "bench": "sync_end_to_end_latency",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "variants": options.variants,
        "rate_events_per_s": options.rate,
        "seconds": options.seconds,
        "open": open,
        "throttled_shopify_standard_plan": throttled,
    });
    println!("{line}");
    Ok(())
}
