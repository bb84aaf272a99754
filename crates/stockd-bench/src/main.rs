//! stockd-bench: durable event throughput of the stores.
//!
//! For each backend it loads a catalog (default 100,000 variants over two
//! locations), then applies a mix of receipts and single-line orders on
//! random variants in three ways, each on a fresh database:
//! - `naive`: one client, one event per request: every event is its own
//!   transaction and fsync (the baseline);
//! - `single`: many concurrent clients, one event per request: the writer
//!   groups whatever is queued into one commit;
//! - `batch`: a few clients sending requests of many events.
//!
//! Latency is measured per request, from submit to the answer (which comes
//! after the commit). Prints one JSON line.
//!
//! With `--catalog`, the batch run is repeated on a realistic catalog: every
//! variant listed on five channels, rules with overrides, 1 % kits (see
//! `catalog.rs`), so each group also recomputes and writes the desired
//! channel states of what it touched. The batch run without listings is
//! run again after it (`batch_after`, a fresh database again), and
//! `batch_listed_vs_batch` compares the listed run with the mean of the two
//! that bracket it: the speed of a shared machine drifts over the minutes
//! an import takes, by as much as the effect measured.
//!
//! Usage: stockd-bench [--backend sqlite|postgres|both] [--variants N]
//!        [--events N] [--naive-events N] [--postgres-url URL] [--catalog]

mod catalog;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_core::{Event, EventInput, Location, LocationId, Sku, Submission, Variant};
use stockd_store::{submission, Store};

struct Options {
    backends: Vec<String>,
    variants: usize,
    events: usize,
    naive_events: usize,
    single_clients: usize,
    batch_clients: usize,
    batch_size: usize,
    postgres_url: Option<String>,
    catalog: bool,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        backends: vec!["sqlite".into(), "postgres".into()],
        variants: 100_000,
        events: 200_000,
        naive_events: 2_000,
        single_clients: 256,
        batch_clients: 8,
        batch_size: 2_000,
        postgres_url: None,
        catalog: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => {
                options.backends = match value()?.as_str() {
                    "both" => vec!["sqlite".into(), "postgres".into()],
                    b @ ("sqlite" | "postgres") => vec![b.to_string()],
                    other => bail!("unknown backend {other}"),
                }
            }
            "--variants" => options.variants = value()?.parse()?,
            "--events" => options.events = value()?.parse()?,
            "--naive-events" => options.naive_events = value()?.parse()?,
            "--single-clients" => options.single_clients = value()?.parse()?,
            "--batch-clients" => options.batch_clients = value()?.parse()?,
            "--batch-size" => options.batch_size = value()?.parse()?,
            "--postgres-url" => options.postgres_url = Some(value()?),
            "--catalog" => options.catalog = true,
            "-h" | "--help" => {
                println!(
                    "stockd-bench [--backend sqlite|postgres|both] [--variants N] [--events N] \
                     [--naive-events N] [--single-clients N] [--batch-clients N] [--batch-size N] \
                     [--postgres-url URL] [--catalog]\nPrints one JSON line of figures."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    Ok(options)
}

/// A small deterministic generator, so every run sends the same workload.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn sku(i: usize) -> String {
    catalog::sku(i)
}

/// Half receipts, half single-line orders on random variants.
fn workload(tag: &str, count: usize, variants: usize, seed: u64) -> Vec<Submission> {
    let mut rng = XorShift(seed);
    (0..count)
        .map(|i| {
            let mut v = rng.below(variants);
            // Orders and receipts name no kit of the `--catalog` run, so
            // every run sends the same workload as the runs recorded before
            // (a component's events still move the kits containing it).
            if catalog::is_kit(v) {
                v -= 1;
            }
            let s = sku(v);
            let input = if i % 2 == 0 {
                EventInput {
                    key: Some(format!("{tag}-r-{i}")),
                    kind: Some("receipt".into()),
                    sku: Some(s),
                    location: Some(if rng.below(2) == 0 { "AMS" } else { "RTM" }.into()),
                    qty: Some(1 + rng.below(5) as i64),
                    ..EventInput::default()
                }
            } else {
                EventInput {
                    key: Some(format!("{tag}-o-{i}")),
                    kind: Some("order".into()),
                    channel: Some("shop".into()),
                    order_id: Some(format!("{tag}-{i}")),
                    lines: Some(vec![stockd_core::event::LineInput {
                        line_id: Some("1".into()),
                        sku: Some(s),
                        qty: Some(1),
                        location: None,
                    }]),
                    ..EventInput::default()
                }
            };
            submission(Event::validate(&input).expect("bench events are valid"))
        })
        .collect()
}

async fn prepare(store: &Arc<dyn Store>, variants: usize) -> Result<()> {
    for (id, priority) in [("AMS", 1), ("RTM", 2)] {
        store
            .upsert_location(Location {
                id: LocationId::parse(id)?,
                name: id.into(),
                sellable: true,
                priority,
            })
            .await?;
    }
    let all: Vec<Variant> = (0..variants)
        .map(|i| Variant {
            sku: Sku::parse(sku(i)).expect("valid sku"),
            title: None,
            product_id: None,
            gtin: None,
        })
        .collect();
    for chunk in all.chunks(10_000) {
        store.upsert_variants(chunk.to_vec()).await?;
    }
    Ok(())
}

/// Sends `events` as requests of `batch_size` from `clients` concurrent tasks.
async fn drive(
    store: &Arc<dyn Store>,
    events: Vec<Submission>,
    clients: usize,
    batch_size: usize,
) -> Result<Value> {
    let count = events.len();
    let requests: Vec<Vec<Submission>> = events
        .chunks(batch_size)
        .map(<[Submission]>::to_vec)
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let store = store.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().expect("queue lock").next();
                let Some(request) = next else { break };
                let sent = Instant::now();
                let outcome = store.submit(request).await?;
                if outcome.is_err() {
                    anyhow::bail!("request refused: {outcome:?}");
                }
                latencies.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        let at = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        (latencies[at].as_secs_f64() * 1e6).round() / 1e3
    };
    Ok(json!({
        "events": count,
        "clients": clients,
        "events_per_request": batch_size,
        "seconds": (elapsed.as_secs_f64() * 1e3).round() / 1e3,
        "events_per_s": (count as f64 / elapsed.as_secs_f64()).round(),
        "commit_latency_ms_p50": pct(0.50),
        "commit_latency_ms_p99": pct(0.99),
    }))
}

async fn open_fresh(
    backend: &str,
    options: &Options,
    run: &str,
) -> Result<(Arc<dyn Store>, Option<tempfile::TempDir>)> {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            Ok((stockd_store::open(&url).await?, Some(dir)))
        }
        _ => {
            let url = match &options.postgres_url {
                Some(url) => url.clone(),
                None => stockd_store::test_support::fresh_postgres_url(&format!("bench_{run}"))
                    .await
                    .context("PostgreSQL is unreachable (set --postgres-url)")?,
            };
            Ok((stockd_store::open(&url).await?, None))
        }
    }
}

/// One run on a fresh database of `options.variants` unlisted variants.
async fn unlisted_run(
    backend: &str,
    options: &Options,
    run: &str,
    count: usize,
    clients: usize,
    batch_size: usize,
) -> Result<Value> {
    let (store, _dir) = open_fresh(backend, options, run).await?;
    prepare(&store, options.variants).await?;
    let events = workload(run, count, options.variants, 0x5eed_0001);
    let result = drive(&store, events, clients, batch_size).await?;
    store.close().await;
    Ok(result)
}

async fn bench_backend(backend: &str, options: &Options) -> Result<Value> {
    let mut figures = serde_json::Map::new();
    let runs: [(&str, usize, usize, usize); 3] = [
        ("naive", options.naive_events, 1, 1),
        ("single", options.events / 4, options.single_clients, 1),
        (
            "batch",
            options.events,
            options.batch_clients,
            options.batch_size,
        ),
    ];
    for (run, count, clients, batch_size) in runs {
        let result = unlisted_run(backend, options, run, count, clients, batch_size).await?;
        eprintln!("{backend} {run}: {result}");
        figures.insert(run.to_string(), result);
    }
    if options.catalog {
        // The batch run again, on variants listed on five channels.
        let (store, _dir) = open_fresh(backend, options, "listed").await?;
        let files = tempfile::tempdir()?;
        let import = catalog::build(&store, files.path(), options.variants, 5).await?;
        let events = workload("listed", options.events, options.variants, 0x5eed_0001);
        let mut result = drive(&store, events, options.batch_clients, options.batch_size).await?;
        store.close().await;
        result["import"] = import;
        eprintln!("{backend} batch_listed: {result}");
        let after = unlisted_run(
            backend,
            options,
            "batch_after",
            options.events,
            options.batch_clients,
            options.batch_size,
        )
        .await?;
        eprintln!("{backend} batch_after: {after}");
        let rate = |run: &Value| run["events_per_s"].as_f64().unwrap_or(0.0);
        let unlisted = (rate(&figures["batch"]) + rate(&after)) / 2.0;
        let ratio = rate(&result) / unlisted.max(1.0);
        figures.insert("batch_listed".into(), result);
        figures.insert("batch_after".into(), after);
        figures.insert(
            "batch_listed_vs_batch".into(),
            json!((ratio * 100.0).round() / 100.0),
        );
    }
    let speedup = |run: &str| {
        let of = |r: &str| figures[r]["events_per_s"].as_f64().unwrap_or(0.0);
        ((of(run) / of("naive").max(1.0)) * 10.0).round() / 10.0
    };
    let (single, batch) = (speedup("single"), speedup("batch"));
    figures.insert("single_vs_naive_x".into(), json!(single));
    figures.insert("batch_vs_naive_x".into(), json!(batch));
    Ok(Value::Object(figures))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options()?;
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), json!("ledger_durable_events"));
    out.insert("variants".into(), json!(options.variants));
    out.insert(
        "cores".into(),
        json!(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)),
    );
    for backend in &options.backends {
        out.insert(backend.clone(), bench_backend(backend, &options).await?);
    }
    out.insert("rss_peak_mib".into(), json!(catalog::peak_rss_mib()));
    println!("{}", Value::Object(out));
    Ok(())
}
