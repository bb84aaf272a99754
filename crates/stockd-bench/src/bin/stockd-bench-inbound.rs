//! stockd-bench-inbound: inbound and outbound paths beyond HTTP, on SQLite.
//!
//! - `nats_ingest`: events published on NATS JetStream in messages of
//!   `--per-message` events are consumed by a stockd server (`[inbound.nats]`)
//!   from a full stream; events per second until the last is acknowledged.
//! - `http_ingest`: the same events as `POST /v1/events` requests of the same
//!   size from `--clients` concurrent clients, in the same run.
//! - `http_ingest_publishing`: the HTTP figure again with `[outbound.nats]`
//!   publishing every changed SKU (the publish outbox is marked in both).
//! - `feed_import`: a supplier stock CSV of `--feed-rows` rows (one per
//!   variant) through a feed run, then the same file again (all duplicates).
//!
//! Prints one JSON line. Needs NATS with JetStream (`--nats-url`, default
//! nats://127.0.0.1:4222).

use anyhow::{bail, Context, Result};
use async_nats::jetstream;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd::config::ServeConfig;
use stockd::inbound::{NatsAuth, NatsInboundSettings};

struct Options {
    nats_url: String,
    events: usize,
    per_message: usize,
    variants: usize,
    clients: usize,
    feed_rows: usize,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        nats_url: "nats://127.0.0.1:4222".into(),
        events: 200_000,
        per_message: 100,
        variants: 10_000,
        clients: 8,
        feed_rows: 100_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--nats-url" => o.nats_url = value()?,
            "--events" => o.events = value()?.parse()?,
            "--per-message" => o.per_message = value()?.parse()?,
            "--variants" => o.variants = value()?.parse()?,
            "--clients" => o.clients = value()?.parse()?,
            "--feed-rows" => o.feed_rows = value()?.parse()?,
            "-h" | "--help" => {
                println!("stockd-bench-inbound [--nats-url URL] [--events N] [--per-message N] [--variants N] [--clients N] [--feed-rows N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    Ok(o)
}

fn serve_config(database_url: String) -> ServeConfig {
    ServeConfig::plain(SocketAddr::from(([127, 0, 0, 1], 0)), database_url)
}

fn sku(i: usize) -> String {
    format!("BENCH-{i:07}")
}

/// A fresh SQLite store with `variants` variants at location WH.
async fn fresh_catalog(dir: &tempfile::TempDir, name: &str, variants: usize) -> Result<String> {
    let url = format!("sqlite://{}", dir.path().join(name).display());
    let store = stockd_store::open(&url).await?;
    let location = stockd::input::parse_location("WH", &json!({"name": "warehouse"}))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.upsert_location(location).await?;
    let all: Vec<_> = (0..variants)
        .map(|i| stockd::input::parse_variant_item(&json!({ "sku": sku(i) })).expect("variant"))
        .collect();
    for chunk in all.chunks(10_000) {
        store.upsert_variants(chunk.to_vec()).await?;
    }
    store.close().await;
    Ok(url)
}

/// The workload: receipts on variants chosen by a fixed stride.
fn events(o: &Options, tag: &str) -> Vec<Value> {
    (0..o.events)
        .map(|i| {
            json!({"key": format!("{tag}-{i}"), "type": "receipt",
                   "sku": sku((i * 7919) % o.variants), "location": "WH", "qty": 1})
        })
        .collect()
}

async fn nats_ingest(
    o: &Options,
    dir: &tempfile::TempDir,
    js: &jetstream::Context,
) -> Result<Value> {
    let url = fresh_catalog(dir, "nats.db", o.variants).await?;
    let id = std::process::id();
    let settings = NatsInboundSettings {
        url: o.nats_url.clone(),
        auth: NatsAuth::None,
        stream: format!("STOCKD_BENCH_{id}"),
        subjects: vec![format!("stockd.bench.{id}.>")],
        durable: "stockd".into(),
        batch: 256,
        ack_wait: Duration::from_secs(60),
    };
    // The stream is filled first, so the figure is the consumer's alone.
    js.get_or_create_stream(jetstream::stream::Config {
        name: settings.stream.clone(),
        subjects: settings.subjects.clone(),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let subject = format!("stockd.bench.{id}.wms");
    let all = events(o, "n");
    let mut messages = 0u64;
    for group in all.chunks(o.per_message * 200) {
        let mut acks = Vec::new();
        for message in group.chunks(o.per_message) {
            let body = serde_json::to_vec(message)?;
            acks.push(
                js.publish(subject.clone(), body.into())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            messages += 1;
        }
        for ack in acks {
            ack.await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let mut config = serve_config(url);
    config.inbound.nats = Some(settings.clone());
    let started = Instant::now();
    let server = stockd::spawn(config).await?;
    let stream = js
        .get_stream(&settings.stream)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    loop {
        let mut consumer: jetstream::consumer::PullConsumer =
            match stream.get_consumer("stockd").await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
        let info = consumer.info().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if info.ack_floor.stream_sequence >= messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.shutdown().await?;
    js.delete_stream(&settings.stream)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(json!({
        "events": o.events, "messages": messages, "events_per_message": o.per_message,
        "seconds": elapsed, "events_per_second": (o.events as f64 / elapsed).round(),
    }))
}

async fn http_ingest(
    o: &Options,
    dir: &tempfile::TempDir,
    name: &str,
    publish: bool,
) -> Result<Value> {
    let url = fresh_catalog(dir, name, o.variants).await?;
    let mut config = serve_config(url);
    let id = std::process::id();
    let stream = format!("STOCKD_BENCH_OUT_{id}_{name}").replace('.', "_");
    if publish {
        config.inbound.outbound_nats = Some(stockd::outbound::publish::NatsOutboundSettings {
            url: o.nats_url.clone(),
            auth: NatsAuth::None,
            subject_prefix: format!("stockd.benchout.{id}"),
            stream: stream.clone(),
        });
    }
    let server = stockd::spawn(config).await?;
    let base = server.url();
    let http = reqwest::Client::new();
    let all = Arc::new(events(o, "h"));
    let requests: Vec<(usize, usize)> = (0..o.events)
        .step_by(o.per_message)
        .map(|start| (start, (start + o.per_message).min(o.events)))
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..o.clients {
        let (http, base, all, requests, next) = (
            http.clone(),
            base.clone(),
            all.clone(),
            requests.clone(),
            next.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(from, to)) = requests.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let response = http
                    .post(format!("{base}/v1/events"))
                    .json(&all[from..to])
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("HTTP {}", response.status());
                }
            }
        }));
    }
    for client in clients {
        client.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.shutdown().await?;
    if publish {
        let client = async_nats::connect(o.nats_url.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let _ = jetstream::new(client).delete_stream(&stream).await;
    }
    Ok(json!({
        "events": o.events, "events_per_request": o.per_message, "clients": o.clients,
        "seconds": elapsed, "events_per_second": (o.events as f64 / elapsed).round(),
    }))
}

async fn feed_import(o: &Options, dir: &tempfile::TempDir) -> Result<Value> {
    let url = fresh_catalog(dir, "feed.db", o.feed_rows).await?;
    let store = stockd_store::open(&url).await?;
    let text = r#"
        [[feeds]]
        id = "bench"
        supplier = "bench"
        format = "csv"
        mode = "supplier_stock"
        location = "WH"
        [feeds.columns]
        sku = "sku"
        qty = "qty"
        "#;
    #[derive(serde::Deserialize)]
    struct Wrapper {
        feeds: Vec<stockd::inbound::feeds::FileFeed>,
    }
    let wrapper: Wrapper = toml::from_str(text)?;
    let feed = stockd::inbound::feeds::resolve(wrapper.feeds)?.remove(0);
    let mut csv = String::from("sku,qty\n");
    for i in 0..o.feed_rows {
        csv.push_str(&format!("{},{}\n", sku(i), i % 50));
    }
    let started = Instant::now();
    let run =
        stockd::inbound::feeds::run_feed(&*store, &feed, "bench.csv", csv.as_bytes(), None).await?;
    let first = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let again =
        stockd::inbound::feeds::run_feed(&*store, &feed, "bench.csv", csv.as_bytes(), None).await?;
    let second = started.elapsed().as_secs_f64();
    store.close().await;
    Ok(json!({
        "rows": o.feed_rows, "seconds": first, "rows_applied": run.rows_applied,
        "reimport_seconds": second, "reimport_rows_duplicate": again.rows_duplicate,
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = parse_options()?;
    let client = async_nats::connect(o.nats_url.as_str())
        .await
        .with_context(|| format!("NATS at {}", o.nats_url))?;
    let js = jetstream::new(client);
    let dir = tempfile::tempdir()?;
    let nats = nats_ingest(&o, &dir, &js).await?;
    let http = http_ingest(&o, &dir, "http.db", false).await?;
    let http_publishing = http_ingest(&o, &dir, "http-pub.db", true).await?;
    let overhead = 1.0
        - http_publishing["events_per_second"].as_f64().unwrap_or(0.0)
            / http["events_per_second"].as_f64().unwrap_or(1.0);
    let feed = feed_import(&o, &dir).await?;
    println!(
        "{}",
        json!({
            "backend": "sqlite",
            "nats_ingest": nats,
            "http_ingest": http,
            "http_ingest_publishing": http_publishing,
            "publish_overhead_share": (overhead * 1000.0).round() / 1000.0,
            "feed_import": feed,
        })
    );
    Ok(())
}
