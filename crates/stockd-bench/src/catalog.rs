//! A realistic catalog for the benchmarks: variants four to a product, each
//! listed on up to five channels (one per connector kind), a rules document
//! with channel settings and overrides by SKU glob and by product, and 1 %
//! of the variants kits of two other variants. It is built the way a
//! merchant would: CSV files through `stockd import` (streamed, checked
//! whole, written in large transactions).

use anyhow::Result;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use stockd::client::Target;
use stockd_core::availability::{Bundle, BundleComponent};
use stockd_core::{ChannelId, Location, LocationId, Sku};
use stockd_store::{ChannelKind, ChannelRecord, Store};

pub const CHANNELS: [(&str, ChannelKind); 5] = [
    ("shop", ChannelKind::Shopify),
    ("woo", ChannelKind::Woocommerce),
    ("bol", ChannelKind::Bol),
    ("amazon", ChannelKind::Amazon),
    ("gmc", ChannelKind::Gmc),
];

pub fn sku(i: usize) -> String {
    format!("SKU-{i:07}")
}

/// Every hundredth variant is a kit of the two before it.
pub fn is_kit(i: usize) -> bool {
    i % 100 == 99
}

/// Peak resident memory of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| (kib / 1024.0 * 10.0).round() / 10.0)
}

fn secs(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e3).round() / 1e3
}

/// Locations, variants; with `channels` > 0 also channels, rules, kits and
/// listings. Returns the import figures.
pub async fn build(
    store: &Arc<dyn Store>,
    dir: &Path,
    variants: usize,
    channels: usize,
) -> Result<Value> {
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
    let target = Target::Direct(store.clone());
    let path = dir.join("variants.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "sku,title,product_id")?;
        for i in 0..variants {
            writeln!(out, "{},Variant {i},P{:06}", sku(i), i / 4)?;
        }
    }
    let started = Instant::now();
    let total = stockd::import::check_variants(&path).await?;
    stockd::import::send_variants(&target, &path, total).await?;
    let variants_s = secs(started);
    let mut figures = serde_json::Map::new();
    figures.insert("import_variants_s".into(), json!(variants_s));
    if channels == 0 {
        return Ok(Value::Object(figures));
    }

    for (id, kind) in CHANNELS.iter().take(channels) {
        store
            .upsert_channel(ChannelRecord {
                id: ChannelId::parse(*id)?,
                kind: *kind,
                locations: None,
                enabled: true,
            })
            .await?;
    }
    let names: Vec<&str> = CHANNELS.iter().take(channels).map(|c| c.0).collect();
    let document = serde_json::from_value(json!({
        "defaults": {"safety_stock": 1},
        "channels": names.iter().map(|c| (c.to_string(), json!({"percent": 90}))).collect::<serde_json::Map<_, _>>(),
        "overrides": [
            {"match": {"sku": "SKU-00*"}, "set": {"max_exposed": 20}},
            {"match": {"product_id": "P000007"}, "channels": [names[0]], "set": {"safety_stock": 0}},
        ],
    }))?;
    store
        .add_rules_version(document, "bench".into(), "bench".into())
        .await?;
    let started = Instant::now();
    let mut kits = 0;
    for i in (0..variants).filter(|i| is_kit(*i)) {
        store
            .put_bundle(
                Bundle {
                    kit: Sku::parse(sku(i))?,
                    components: vec![
                        BundleComponent {
                            sku: Sku::parse(sku(i - 1))?,
                            qty: 1,
                        },
                        BundleComponent {
                            sku: Sku::parse(sku(i - 2))?,
                            qty: 2,
                        },
                    ],
                },
                "bench",
            )
            .await?;
        kits += 1;
    }
    figures.insert("kits".into(), json!(kits));
    figures.insert("kits_s".into(), json!(secs(started)));

    let started = Instant::now();
    let mut per_channel = Vec::new();
    for name in &names {
        let path = dir.join(format!("listings-{name}.csv"));
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
            writeln!(out, "sku,external.id")?;
            for i in 0..variants {
                writeln!(out, "{},{name}-{i}", sku(i))?;
            }
        }
        let channel = ChannelId::parse(*name)?;
        let one = Instant::now();
        let total = stockd::import::check_listings(&path, &channel).await?;
        stockd::import::send_listings(&target, &channel, &path, total).await?;
        per_channel.push(secs(one));
        std::fs::remove_file(&path)?;
        eprintln!(
            "listings of {name} imported in {:.1} s",
            one.elapsed().as_secs_f64()
        );
    }
    figures.insert("listings".into(), json!(variants * channels));
    figures.insert("import_listings_s".into(), json!(secs(started)));
    figures.insert("import_listings_per_channel_s".into(), json!(per_channel));
    figures.insert(
        "import_total_s".into(),
        json!(((variants_s + secs(started)) * 1e3).round() / 1e3),
    );
    Ok(Value::Object(figures))
}
