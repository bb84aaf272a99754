//! stockd-bench-console: how fast the operator console's pages answer on a
//! catalog of `--variants` (default 100,000) variants listed on five channels
//! (SQLite).
//!
//! Setup (untimed): one location; variants with titles and GTINs and a
//! receipt each through the API; five channels; a rules document with
//! per-channel values and overrides; every variant listed on every channel
//! (written to the store directly, as a bulk import would); the desired states
//! of the first 2,000 SKUs computed (so they lag: no channel is connected);
//! a few quarantined events. The API and console are served in process.
//!
//! Then every console page is fetched `--rounds` times (after one warm-up)
//! over loopback with a session cookie; the time to the last byte of the body
//! bounds the server time from above. A rules preview over all listings is
//! timed once (it is an action, not a page). Prints one JSON line with p50
//! and max per page in milliseconds.
//!
//! Usage: stockd-bench-console [--variants N] [--rounds N]

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value};
use std::time::Instant;
use stockd::api::AppState;
use stockd::auth::Auth;
use stockd::config::{HttpLimits, BODY_LIMIT_BYTES_DEFAULT, EVENTS_BODY_LIMIT_BYTES_DEFAULT};
use stockd_core::{ChannelId, Sku};
use stockd_store::ListingRecord;

const CHANNELS: &[(&str, &str)] = &[
    ("shop", "shopify"),
    ("woo", "woocommerce"),
    ("bol", "bol"),
    ("amazon", "amazon"),
    ("gmc", "gmc"),
];
const BATCH: usize = 5_000;

fn sku(i: usize) -> String {
    format!("SKU-{i:07}")
}

/// An EAN-13 with a valid check digit.
fn gtin(i: usize) -> String {
    let body = format!("400{:09}", i);
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(k, b)| u32::from(b - b'0') * if k % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

const COLOURS: &[&str] = &["red", "blue", "green", "black", "white", "oak", "sand"];

struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Milliseconds to fetch a console page (all of its body).
    async fn page(&self, path: &str) -> Result<f64> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("{path}: {status}: {body}");
        }
        Ok(ms)
    }
}

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("missing value")?
            .parse()
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let variants = arg("--variants", 100_000)?;
    let rounds = arg("--rounds", 20)?.max(1);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("console.db").display());
    let store = stockd_store::open(&url).await?;
    let state = AppState::new(store.clone(), Auth::Open);
    let app = stockd::api::router(
        state,
        HttpLimits {
            body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
            events_body_limit_bytes: EVENTS_BODY_LIMIT_BYTES_DEFAULT,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut client = Client {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base,
        cookie: String::new(),
    };

    let setup = Instant::now();
    client
        .send(
            reqwest::Method::PUT,
            "/v1/locations/W1",
            Some(json!({"name": "Warehouse", "sellable": true, "priority": 1})),
        )
        .await?;
    for start in (0..variants).step_by(BATCH) {
        let end = (start + BATCH).min(variants);
        let items: Vec<Value> = (start..end)
            .map(|i| {
                json!({"sku": sku(i), "title": format!("Product {i} {}", COLOURS[i % COLOURS.len()]),
                       "gtin": gtin(i), "product_id": format!("P{}", i / 4)})
            })
            .collect();
        client
            .send(
                reqwest::Method::POST,
                "/v1/variants",
                Some(Value::Array(items)),
            )
            .await?;
        let events: Vec<Value> = (start..end)
            .map(|i| {
                json!({"key": format!("r-{i}"), "type": "receipt", "sku": sku(i),
                       "location": "W1", "qty": 1 + (i % 40)})
            })
            .collect();
        client
            .send(
                reqwest::Method::POST,
                "/v1/events",
                Some(Value::Array(events)),
            )
            .await?;
    }
    for (id, kind) in CHANNELS {
        client
            .send(
                reqwest::Method::PUT,
                &format!("/v1/channels/{id}"),
                Some(json!({"kind": kind})),
            )
            .await?;
    }
    let rules = json!({
        "defaults": {"safety_stock": 1},
        "channels": {"bol": {"percent": 80}, "amazon": {"max_exposed": 50}},
        "overrides": [{"match": {"sku": "SKU-00001*"}, "set": {"safety_stock": 3}}]
    });
    let doc =
        stockd::input::parse_rules_document(&rules).map_err(|e| anyhow::anyhow!("rules: {e:?}"))?;
    store
        .add_rules_version(doc, "bench".into(), "bench".into())
        .await?;
    for (id, _) in CHANNELS {
        let channel = ChannelId::parse(id.to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
        for start in (0..variants).step_by(10_000) {
            let end = (start + 10_000).min(variants);
            let listings: Vec<ListingRecord> = (start..end)
                .map(|i| -> Result<ListingRecord> {
                    Ok(ListingRecord {
                        channel: channel.clone(),
                        sku: Sku::parse(sku(i)).map_err(|e| anyhow::anyhow!("{e}"))?,
                        external: Map::new(),
                        rank: None,
                    })
                })
                .collect::<Result<_>>()?;
            store.upsert_listings(listings).await?;
        }
    }
    let lagging: Vec<Sku> = (0..variants.min(2_000))
        .map(|i| Sku::parse(sku(i)).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<_>>()?;
    store.refresh_desired(Some(lagging)).await?;
    let waiting: Vec<Value> = (0..20)
        .map(|i| {
            json!({"key": format!("q-{i}"), "type": "receipt", "sku": format!("NEW-{i}"),
                   "location": "W1", "qty": 1})
        })
        .collect();
    client
        .send(
            reqwest::Method::POST,
            "/v1/events",
            Some(Value::Array(waiting)),
        )
        .await?;
    let setup_s = setup.elapsed().as_secs_f64();

    // A session (the API runs open on loopback: sign-in hands one out).
    let response = client
        .http
        .get(format!("{}/signin", client.base))
        .send()
        .await?;
    client.cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_string();
    // Let the sampler take a few samples first.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    let mid = sku(variants / 2);
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/".into()),
        ("overview_live", "/overview/live".into()),
        ("stock_search_sku_prefix", "/stock?q=SKU-00500".into()),
        (
            "stock_search_gtin",
            format!("/stock?q={}", gtin(variants / 3)),
        ),
        ("stock_search_title_rare", "/stock?q=zebra".into()),
        ("stock_search_title_common", "/stock?q=oak".into()),
        ("stock_search_title_short", "/stock?q=oa".into()),
        ("stock_sku", format!("/stock/{mid}")),
        ("stock_sku_lagging", format!("/stock/{}", sku(10))),
        ("channels", "/channels".into()),
        ("channel_lagging", "/channels/bol?filter=lagging".into()),
        (
            "channel_all",
            format!("/channels/bol?filter=all&after={mid}"),
        ),
        ("channel_budget", "/channels/bol?filter=budget".into()),
        ("channel_dead", "/channels/bol?filter=dead".into()),
        ("channel_drifting", "/channels/bol?filter=drifting".into()),
        ("returns_open", "/returns".into()),
        ("inbound_rejected", "/inbound".into()),
        ("rules", "/rules".into()),
        ("rules_diff", "/rules/diff?from=0&to=1".into()),
        ("quarantine", "/quarantine".into()),
    ];
    let mut figures = Map::new();
    let mut worst: f64 = 0.0;
    for (name, path) in &pages {
        client.page(path).await?;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            times.push(client.page(path).await?);
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let max = times[times.len() - 1];
        worst = worst.max(max);
        figures.insert(
            name.to_string(),
            json!({"p50_ms": (p50 * 100.0).round() / 100.0, "max_ms": (max * 100.0).round() / 100.0}),
        );
    }

    // The live section by server-sent events: time to the first event.
    let mut stream_times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let mut response = client
            .http
            .get(format!("{}/overview/stream", client.base))
            .header("cookie", &client.cookie)
            .send()
            .await?;
        let mut text = String::new();
        while !text.contains("</table>") {
            let chunk = response.chunk().await?.context("stream ended early")?;
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        stream_times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    stream_times.sort_by(f64::total_cmp);
    let stream_p50 = stream_times[stream_times.len() / 2];
    let stream_max = stream_times[stream_times.len() - 1];
    worst = worst.max(stream_max);
    figures.insert(
        "overview_stream_first_event".to_string(),
        json!({"p50_ms": (stream_p50 * 100.0).round() / 100.0, "max_ms": (stream_max * 100.0).round() / 100.0}),
    );

    // The rules preview over every listing (an action).
    let page = client.page("/rules").await;
    page?;
    let csrf_page = client
        .http
        .get(format!("{}/rules", client.base))
        .header("cookie", &client.cookie)
        .send()
        .await?
        .text()
        .await?;
    let marker = "name=\"csrf\" value=\"";
    let at = csrf_page.find(marker).context("csrf field")? + marker.len();
    let csrf = &csrf_page[at..at + 64];
    let next = json!({"defaults": {"safety_stock": 2}}).to_string();
    let started = Instant::now();
    let response = client
        .http
        .post(format!("{}/rules/preview", client.base))
        .header("cookie", &client.cookie)
        .form(&[("csrf", csrf), ("rules", next.as_str())])
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    let preview_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() || !body.contains("preview-summary") {
        bail!("preview failed: {status}");
    }

    println!(
        "{}",
        json!({
            "bench": "console",
            "store": "sqlite",
            "variants": variants,
            "channels": CHANNELS.len(),
            "listings": variants * CHANNELS.len(),
            "rounds": rounds,
            "setup_s": (setup_s * 10.0).round() / 10.0,
            "pages": figures,
            "worst_page_ms": (worst * 100.0).round() / 100.0,
            "rules_preview_all_listings_ms": preview_ms.round(),
        })
    );
    server.abort();
    store.close().await;
    Ok(())
}
