//! stockd-bench-scale: stockd at catalog scale (SQLite). Builds a realistic
//! catalog (default 1,000,000 variants, each listed on five channels, rules
//! with overrides, 1 % kits) through the import commands, applies stock
//! receipts, then restarts stockd as a server and measures:
//! - import time (variants, listings) and the peak memory of the process
//!   (also as it stood after the import, the start-up recompute and the preview);
//! - start-up: until the server answers, until an event applies, until the
//!   recompute of every desired state is over (`/readyz`);
//! - the API's read paths: a stock page, a listings page, one SKU, a page of
//!   pending outbox rows (p50 and max over repeated calls), a rules preview
//!   across every listing, and a full read of all listing states.
//!
//! Usage: stockd-bench-scale [--variants N] [--channels N] [--receipts N] [--reads N]
//! [--store URL]. Without `--store`, a SQLite file in a temporary directory;
//! with a `postgres://` URL, that database (it must be empty).
//! Prints one JSON line.

#[path = "../catalog.rs"]
mod catalog;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd::config::ServeConfig;
use stockd_core::{Event, EventInput, Submission};
use stockd_store::{submission, Store};

struct Options {
    variants: usize,
    channels: usize,
    receipts: usize,
    reads: usize,
    store: Option<String>,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        variants: 1_000_000,
        channels: 5,
        receipts: 200_000,
        reads: 20,
        store: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--variants" => options.variants = value()?.parse()?,
            "--channels" => options.channels = value()?.parse::<usize>()?.clamp(1, 5),
            "--receipts" => options.receipts = value()?.parse()?,
            "--reads" => options.reads = value()?.parse::<usize>()?.max(1),
            "--store" => options.store = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "stockd-bench-scale [--variants N] [--channels 1-5] [--receipts N] [--reads N] [--store URL]\n\
                     --store: an empty postgres:// database (default: a temporary SQLite file).\n\
                     Prints one JSON line of figures."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    Ok(options)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

/// Receipts on every `step`-th variant, in requests of 2,000 from 4 clients.
async fn receipts(store: &Arc<dyn Store>, options: &Options) -> Result<Value> {
    let count = options.receipts.min(options.variants);
    if count == 0 {
        return Ok(Value::Null);
    }
    let step = (options.variants / count).max(1);
    let events: Vec<Submission> = (0..count)
        .map(|n| {
            let i = n * step;
            let input = EventInput {
                key: Some(format!("stock-{i}")),
                kind: Some("receipt".into()),
                sku: Some(catalog::sku(i)),
                location: Some(if i.is_multiple_of(3) { "RTM" } else { "AMS" }.into()),
                qty: Some(1 + (i % 40) as i64),
                ..EventInput::default()
            };
            submission(Event::validate(&input).expect("bench events are valid"))
        })
        .collect();
    let requests: Vec<Vec<Submission>> = events.chunks(2_000).map(<[_]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue lock").next();
                let Some(request) = next else { break };
                if store.submit(request).await?.is_err() {
                    anyhow::bail!("receipts refused");
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    Ok(json!({
        "events": count,
        "seconds": secs(elapsed),
        "events_per_s": (count as f64 / elapsed.as_secs_f64()).round(),
    }))
}

/// p50 and max of `reads` calls of one GET.
async fn timed_gets(client: &reqwest::Client, url: &str, reads: usize) -> Result<Value> {
    let mut times = Vec::with_capacity(reads);
    for _ in 0..reads {
        let started = Instant::now();
        let response = client.get(url).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("GET {url}: {status} {}", String::from_utf8_lossy(&body));
        }
        times.push(started.elapsed());
    }
    times.sort();
    Ok(json!({"p50_ms": ms(times[times.len() / 2]), "max_ms": ms(times[times.len() - 1])}))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options()?;
    let dir = tempfile::tempdir()?;
    let url = options
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("scale.db").display()));
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), json!("catalog_scale"));
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    out.insert("store".into(), json!(backend));
    out.insert("variants".into(), json!(options.variants));
    out.insert("channels".into(), json!(options.channels));
    out.insert(
        "cores".into(),
        json!(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)),
    );

    // Build the catalog and stock it, on the store directly.
    let store = stockd_store::open(&url).await?;
    let import = catalog::build(&store, dir.path(), options.variants, options.channels).await?;
    eprintln!("import: {import}");
    out.insert("import".into(), import);
    let stocked = receipts(&store, &options).await?;
    eprintln!("receipts: {stocked}");
    out.insert("receipts_listed".into(), stocked);
    store.close().await;
    out.insert(
        "rss_peak_mib_after_import".into(),
        json!(catalog::peak_rss_mib()),
    );

    // Start stockd on that database.
    let started = Instant::now();
    let server = stockd::spawn(ServeConfig::plain(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        url.clone(),
    ))
    .await?;
    let base = server.url();
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await?;
    if !ready.status().is_success() {
        bail!("/readyz: {}", ready.status());
    }
    let answered = started.elapsed();
    let applied = client
        .post(format!("{base}/v1/events"))
        .json(&json!({"key": "after-start", "type": "receipt", "sku": catalog::sku(1), "location": "AMS", "qty": 1}))
        .send()
        .await?;
    if !applied.status().is_success() {
        bail!(
            "first event: {} {}",
            applied.status(),
            applied.text().await?
        );
    }
    let first_event = started.elapsed();
    eprintln!("answering after {answered:?}, first event applied after {first_event:?}");

    // The API's read paths while the start-up recompute runs, then after.
    let mid = catalog::sku(options.variants / 2);
    let reads = [
        (
            "stock_page",
            format!("{base}/v1/stock?limit=100&after={mid}"),
        ),
        (
            "listings_page",
            format!("{base}/v1/channels/shop/listings?limit=100&after={mid}"),
        ),
        ("one_sku", format!("{base}/v1/stock/{mid}")),
        ("outbox_pending_page", format!("{base}/v1/outbox?limit=100")),
    ];
    let mut during = serde_json::Map::new();
    for (name, url) in &reads {
        during.insert(
            name.to_string(),
            timed_gets(&client, url, options.reads).await?,
        );
    }
    let recompute = loop {
        let body: Value = client
            .get(format!("{base}/readyz"))
            .send()
            .await?
            .json()
            .await?;
        if body["recompute"] == "done" {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("recompute done after {recompute:?}");
    out.insert(
        "rss_peak_mib_after_recompute".into(),
        json!(catalog::peak_rss_mib()),
    );
    out.insert(
        "start".into(),
        json!({
            "answering_s": secs(answered),
            "first_event_applied_s": secs(first_event),
            "recompute_done_s": secs(recompute),
        }),
    );
    let mut after = serde_json::Map::new();
    for (name, url) in &reads {
        after.insert(
            name.to_string(),
            timed_gets(&client, url, options.reads).await?,
        );
    }
    out.insert(
        "api_read_ms".into(),
        json!({"during_recompute": during, "after_recompute": after}),
    );

    // A rules preview across every listing.
    let started = Instant::now();
    let preview = client
        .post(format!("{base}/v1/rules/preview"))
        .json(&json!({"rules": {"defaults": {"safety_stock": 2}, "overrides": [{"match": {"sku": "SKU-01*"}, "set": {"max_exposed": 5}}]}}))
        .send()
        .await?;
    if !preview.status().is_success() {
        bail!("preview: {} {}", preview.status(), preview.text().await?);
    }
    let preview: Value = preview.json().await?;
    out.insert(
        "rules_preview".into(),
        json!({"seconds": secs(started.elapsed()), "summary": preview.get("summary")}),
    );
    eprintln!("preview in {:?}", started.elapsed());
    out.insert(
        "rss_peak_mib_after_preview".into(),
        json!(catalog::peak_rss_mib()),
    );

    // A reconciliation-sized read: every listing state, 1,000 per page.
    let started = Instant::now();
    let mut rows = 0usize;
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/outbox?pending=false&limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = client.get(&url).send().await?.json().await?;
        rows += page["items"].as_array().map_or(0, Vec::len);
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    out.insert(
        "full_read".into(),
        json!({"listing_states": rows, "seconds": secs(started.elapsed())}),
    );
    out.insert("rss_peak_mib".into(), json!(catalog::peak_rss_mib()));
    server.shutdown().await?;
    println!("{}", Value::Object(out));
    Ok(())
}
