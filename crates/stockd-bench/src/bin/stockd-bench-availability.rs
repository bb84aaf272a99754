//! stockd-bench-availability: speed of the channel availability computation
//! in the core (no store, no I/O).
//!
//! It generates a catalog in memory (default 1,000,000 variants, 1 % of them
//! kits of 2–3 components) over three locations (`W1`, `W2` sellable, `Q` not
//! sellable), five channels (shopify, woocommerce, bol, amazon, gmc; two on
//! every sellable location, the others on subsets), every variant listed on
//! every channel, some inbound with ETAs, and a rules document with defaults,
//! per-channel values, overrides (sku globs, an exact sku, a product id),
//! pre-allocation at low stock (explicit order) and ETA rules. Then:
//! - `full`: one `Context` (rules validated once) and `compute_variant` for
//!   every variant, split over `--threads` threads; results are folded into
//!   a checksum as they come, never kept;
//! - `incremental`: `--events` receipts and single-line orders on random
//!   variants, applied to a `Book` with `ledger::apply`, each followed by a
//!   recompute of the affected listings (the skus the event changed, the kits
//!   containing them, a kit's components: `BundleGraph::affected_skus`). The
//!   rows are loaded into a fresh book per group of events, untimed, like the
//!   store's writer does; apply + recompute is timed per event;
//! - `baseline`: one variant's full recompute (all its listings), timed with
//!   pre-allocation off and on, on random variants.
//!
//! Prints one JSON line. Deterministic: a fixed-seed xorshift generator;
//! `results.checksum` (a sum of per-listing hashes) does not depend on the
//! thread count, and the full recompute is re-run on one thread to show it.
//! `peak_rss_mib` is VmHWM from /proc/self/status (`full.peak_rss_mib`: after
//! the full recompute; the top-level one: at the end).
//!
//! Usage: stockd-bench-availability [--variants N] [--events N] [--threads N]

use anyhow::{bail, Context as _, Result};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use stockd_core::availability::{
    compute_variant, validate_bundles, Availability, Bundle, BundleComponent, BundleGraph, Channel,
    ComponentStock, Context, Listing, ListingAvailability, VariantInput,
};
use stockd_core::event::{EventKind, OrderLine};
use stockd_core::ledger::apply;
use stockd_core::rules::{
    ChangeBudgetDoc, EtaDoc, MatchDoc, OverrideDoc, PreallocationDoc, RuleValues, Rules,
    RulesDocument,
};
use stockd_core::stock::{InboundLine, Quantities, StockKey};
use stockd_core::{
    Book, ChannelId, LineId, Location, LocationId, OrderId, OrderRef, PoId, Sku, Variant,
};

const SEED: u64 = 0x5EED_A7A1_1AB1_E5ED;
/// Events applied to one book, like one group of the store's writer.
const GROUP: usize = 1_000;
/// Variants timed for the pre-allocation off/on baseline.
const BASELINE_SAMPLES: usize = 100_000;
const LOCATIONS: [&str; 3] = ["W1", "W2", "Q"];
const CHANNELS: [&str; 5] = ["shopify", "woocommerce", "bol", "amazon", "gmc"];

struct Options {
    variants: usize,
    events: usize,
    threads: usize,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        variants: 1_000_000,
        events: 200_000,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--variants" => options.variants = value()?.parse()?,
            "--events" => options.events = value()?.parse()?,
            "--threads" => options.threads = value()?.parse()?,
            "-h" | "--help" => {
                println!(
                    "stockd-bench-availability [--variants N] [--events N] [--threads N]\n\
                     Full recompute of every listing (N variants x 5 channels, default \
                     1,000,000), incremental recompute per event (default 200,000 events) and \
                     the per-variant cost with pre-allocation off and on.\n\
                     --threads: threads of the full recompute (default: available cores).\n\
                     Prints one JSON line of figures."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (see --help)"),
        }
    }
    if options.variants < 200 {
        bail!("--variants must be at least 200");
    }
    if options.threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(options)
}

/// A small deterministic generator, so every run computes the same world.
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
    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

// ---------------------------------------------------------------------------
// The world, kept compact: a few integers per variant; ids, variants and
// listings are built when a variant is computed, as a store would load them.

/// One inbound line of a variant: location index, days to the ETA, qty, confirmed.
#[derive(Clone, Copy)]
struct Inbound {
    location: u8,
    days: u8,
    qty: u32,
    confirmed: bool,
}

#[derive(Clone, Copy)]
struct Row {
    /// (on_hand, reserved) at W1, W2, Q (a kit's: its pre-built stock).
    stock: [(i32, i32); 3],
    /// Index into `World::kits`, or `u32::MAX`.
    kit: u32,
    /// Index into `World::inbound`, or `u32::MAX`.
    inbound: u32,
    /// Amazon listing ranked first in pre-allocation.
    amazon_first: bool,
}

struct World {
    rows: Vec<Row>,
    /// Components (variant index, qty per kit) of each kit.
    kits: Vec<Vec<(u32, u32)>>,
    inbound: Vec<Inbound>,
    locations: Vec<Location>,
    location_ids: Vec<LocationId>,
    channels: Vec<Channel>,
    channel_ids: Vec<ChannelId>,
    /// `eta_templates[d].eta` is today + d days (the bench does not depend on
    /// `chrono`, so dates come from their serde form once, here).
    eta_templates: Vec<InboundLine>,
}

const NO_INDEX: u32 = u32::MAX;

impl World {
    fn is_kit(&self, i: usize) -> bool {
        self.rows[i].kit != NO_INDEX
    }

    fn sku(&self, i: usize) -> Sku {
        let prefix = if self.is_kit(i) { "KIT" } else { "SKU" };
        Sku::parse(format!("{prefix}-{i:07}")).expect("valid sku")
    }

    fn index_of(sku: &Sku) -> usize {
        sku.as_str()[4..].parse().expect("a bench sku")
    }

    fn variant(&self, i: usize) -> Variant {
        Variant {
            sku: self.sku(i),
            title: None,
            product_id: Some(format!("P-{:06}", i / 4)),
            gtin: None,
        }
    }

    fn quantities(&self, i: usize, location: usize) -> Quantities {
        let (on_hand, reserved) = self.rows[i].stock[location];
        Quantities {
            on_hand: i64::from(on_hand),
            reserved: i64::from(reserved),
            ..Quantities::default()
        }
    }

    fn components(&self, i: usize) -> &[(u32, u32)] {
        match self.rows[i].kit {
            NO_INDEX => &[],
            k => &self.kits[k as usize],
        }
    }
}

fn id<T>(parse: fn(String) -> Result<T, stockd_core::ids::IdError>, raw: &str) -> T {
    parse(raw.to_string()).expect("valid id")
}

/// ISO date `days` after 2025-06-01 (`days` ≤ 60).
fn date_after_june_first(days: usize) -> String {
    match days {
        0..=29 => format!("2025-06-{:02}", days + 1),
        30..=60 => format!("2025-07-{:02}", days - 29),
        _ => unreachable!("bench dates stay within 60 days"),
    }
}

fn generate(variants: usize, rng: &mut XorShift) -> Result<World> {
    let mut rows = Vec::with_capacity(variants);
    let mut inbound = Vec::new();
    let mut kit_count = 0u32;
    for i in 0..variants {
        let is_kit = i % 100 == 99;
        let mut stock = [(0i32, 0i32); 3];
        if is_kit {
            // Pre-built kits are rare.
            if rng.chance(20) {
                stock[0].0 = 1 + rng.below(4) as i32;
            }
        } else {
            for (l, slot) in stock.iter_mut().enumerate() {
                let on_hand = if l == 2 {
                    // Q (returns, damaged): often empty, never sold from.
                    if rng.chance(50) {
                        0
                    } else {
                        rng.below(20)
                    }
                } else {
                    match rng.below(100) {
                        0..=14 => 0,
                        15..=39 => 1 + rng.below(5),
                        40..=84 => 5 + rng.below(60),
                        _ => 50 + rng.below(500),
                    }
                } as i32;
                let reserved = if l < 2 && rng.chance(2) {
                    // Oversold: more reserved than on hand.
                    on_hand + 1 + rng.below(4) as i32
                } else if on_hand > 0 && rng.chance(30) {
                    rng.below(on_hand as usize / 3 + 1) as i32
                } else {
                    0
                };
                *slot = (on_hand, reserved);
            }
        }
        let inbound_index = if !is_kit && rng.chance(4) {
            inbound.push(Inbound {
                location: rng.below(2) as u8,
                days: rng.below(25) as u8,
                qty: 10 + rng.below(100) as u32,
                confirmed: rng.chance(80),
            });
            (inbound.len() - 1) as u32
        } else {
            NO_INDEX
        };
        rows.push(Row {
            stock,
            kit: if is_kit {
                kit_count += 1;
                kit_count - 1
            } else {
                NO_INDEX
            },
            inbound: inbound_index,
            amazon_first: rng.chance(10),
        });
    }
    let mut kits = Vec::with_capacity(kit_count as usize);
    for _ in rows.iter().filter(|r| r.kit != NO_INDEX) {
        let n = 2 + rng.below(2);
        let mut components: Vec<(u32, u32)> = Vec::with_capacity(n);
        while components.len() < n {
            let mut c = rng.below(variants);
            if c % 100 == 99 {
                c -= 1;
            }
            if components.iter().all(|(s, _)| *s as usize != c) {
                let qty = if rng.chance(70) {
                    1
                } else {
                    2 + rng.below(2) as u32
                };
                components.push((c as u32, qty));
            }
        }
        kits.push(components);
    }

    let locations: Vec<Location> = LOCATIONS
        .iter()
        .enumerate()
        .map(|(i, name)| Location {
            id: id(LocationId::parse, name),
            name: (*name).to_string(),
            sellable: *name != "Q",
            priority: i as i32,
        })
        .collect();
    let location_ids: Vec<LocationId> = locations.iter().map(|l| l.id.clone()).collect();
    let channel_ids: Vec<ChannelId> = CHANNELS.iter().map(|c| id(ChannelId::parse, c)).collect();
    let named = |names: &[&str]| Some(names.iter().map(|n| id(LocationId::parse, n)).collect());
    let channels = vec![
        Channel {
            id: channel_ids[0].clone(),
            locations: None,
            supports_backorder: true,
            max_quantity: None,
        },
        Channel {
            id: channel_ids[1].clone(),
            locations: None,
            supports_backorder: true,
            max_quantity: None,
        },
        Channel {
            id: channel_ids[2].clone(),
            locations: named(&["W1"]),
            supports_backorder: false,
            max_quantity: None,
        },
        Channel {
            id: channel_ids[3].clone(),
            locations: named(&["W2"]),
            supports_backorder: false,
            max_quantity: None,
        },
        Channel {
            // Q is named but not sellable: it never counts.
            id: channel_ids[4].clone(),
            locations: named(&["W1", "Q"]),
            supports_backorder: false,
            max_quantity: None,
        },
    ];
    let eta_templates = (0..=40)
        .map(|d| {
            serde_json::from_value::<InboundLine>(json!({
                "po_id": "PO", "sku": "X", "location": "W1", "qty": 1,
                "eta": date_after_june_first(d), "confirmed": true,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(World {
        rows,
        kits,
        inbound,
        locations,
        location_ids,
        channels,
        channel_ids,
        eta_templates,
    })
}

fn rules_document() -> RulesDocument {
    let values = |safety_stock, percent, max_exposed, min_listed| RuleValues {
        safety_stock,
        percent,
        max_exposed,
        min_listed,
    };
    let glob = |sku: &str, channels: Option<&[&str]>, set| OverrideDoc {
        matcher: MatchDoc {
            sku: Some(sku.into()),
            product_id: None,
        },
        channels: channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
        set,
    };
    RulesDocument {
        defaults: values(Some(1), Some(100), None, Some(0)),
        channels: BTreeMap::from([
            ("shopify".into(), RuleValues::default()),
            ("woocommerce".into(), values(None, Some(90), None, None)),
            ("bol".into(), values(Some(3), None, None, Some(2))),
            ("amazon".into(), values(None, Some(80), Some(50), None)),
            ("gmc".into(), values(None, None, Some(100), None)),
        ]),
        overrides: vec![
            glob("SKU-00001*", None, values(Some(0), None, None, None)),
            glob(
                "SKU-*5",
                Some(&["amazon", "bol"]),
                values(None, None, Some(20), None),
            ),
            glob("KIT-*", None, values(Some(0), None, None, Some(1))),
            OverrideDoc {
                matcher: MatchDoc {
                    sku: None,
                    product_id: Some("P-000042".into()),
                },
                channels: None,
                set: values(None, Some(50), None, None),
            },
            glob("SKU-0000007", None, values(None, None, Some(0), None)),
        ],
        preallocation: Some(PreallocationDoc {
            low_stock_threshold: Some(5),
            order: Some(
                ["shopify", "amazon", "bol", "woocommerce", "gmc"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            by: None,
            window_days: None,
        }),
        eta: Some(EtaDoc {
            backorder_within_days: Some(14),
            handling_days: Some((1, 3)),
        }),
        change_budget: Some(ChangeBudgetDoc {
            per_day: BTreeMap::from([("amazon".into(), 10), ("bol".into(), 20)]),
        }),
    }
}

fn validate(doc: &RulesDocument, world: &World) -> Result<Rules> {
    doc.validate(&world.channel_ids)
        .map_err(|errors| anyhow::anyhow!("invalid bench rules: {errors:?}"))
}

fn bundle_graph(world: &World) -> Result<BundleGraph> {
    let bundles: Vec<Bundle> = (0..world.rows.len())
        .filter(|&i| world.is_kit(i))
        .map(|i| Bundle {
            kit: world.sku(i),
            components: world
                .components(i)
                .iter()
                .map(|&(c, qty)| BundleComponent {
                    sku: world.sku(c as usize),
                    qty,
                })
                .collect(),
        })
        .collect();
    validate_bundles(&bundles).map_err(|errors| anyhow::anyhow!("invalid bundles: {errors:?}"))
}

// ---------------------------------------------------------------------------
// Building one variant's input, as a store would after loading its rows.

/// Buffers reused from one variant to the next (one per thread).
struct Scratch {
    stock: Vec<(LocationId, Quantities)>,
    listings: Vec<Listing>,
    inbound: Vec<InboundLine>,
    components: Vec<ComponentStock>,
}

impl Scratch {
    fn new(world: &World) -> Scratch {
        let placeholder = id(Sku::parse, "X");
        Scratch {
            stock: world
                .location_ids
                .iter()
                .map(|l| (l.clone(), Quantities::default()))
                .collect(),
            listings: world
                .channel_ids
                .iter()
                .map(|c| Listing {
                    channel: c.clone(),
                    sku: placeholder.clone(),
                    rank: None,
                })
                .collect(),
            inbound: Vec::new(),
            components: Vec::new(),
        }
    }

    /// Fills the buffers with variant `i`; `stock(variant, sku, location)`
    /// reads a stock row. Returns the variant.
    fn fill(
        &mut self,
        world: &World,
        i: usize,
        stock: &impl Fn(usize, &Sku, usize) -> Quantities,
    ) -> Variant {
        let variant = world.variant(i);
        let row = &world.rows[i];
        for (l, slot) in self.stock.iter_mut().enumerate() {
            slot.1 = stock(i, &variant.sku, l);
        }
        for (c, listing) in self.listings.iter_mut().enumerate() {
            listing.sku = variant.sku.clone();
            // Amazon (index 3) first for some variants: the listing's rank
            // beats the rules' order.
            listing.rank = (row.amazon_first && c == 3).then_some(1);
        }
        self.inbound.clear();
        if row.inbound != NO_INDEX {
            let line = world.inbound[row.inbound as usize];
            self.inbound.push(InboundLine {
                po_id: id(PoId::parse, &format!("PO-{}", row.inbound)),
                sku: variant.sku.clone(),
                location: world.location_ids[usize::from(line.location)].clone(),
                qty: i64::from(line.qty),
                eta: world.eta_templates[usize::from(line.days)].eta,
                confirmed: line.confirmed,
            });
        }
        self.components.clear();
        for &(c, qty) in world.components(i) {
            let c = c as usize;
            let sku = world.sku(c);
            let rows = world
                .location_ids
                .iter()
                .enumerate()
                .map(|(l, id)| (id.clone(), stock(c, &sku, l)))
                .collect();
            self.components.push(ComponentStock {
                sku,
                qty_per_kit: qty,
                stock: rows,
                components: Vec::new(),
            });
        }
        variant
    }

    fn input<'a>(&'a self, variant: &'a Variant) -> VariantInput<'a> {
        VariantInput {
            variant,
            stock: &self.stock,
            components: &self.components,
            inbound: &self.inbound,
            listings: &self.listings,
            sales: &[],
        }
    }
}

/// Results folded as they come, so none is kept alive.
#[derive(Default, Clone, Copy)]
struct Tally {
    listings: u64,
    quantity: i64,
    in_stock: u64,
    out_of_stock: u64,
    backorder: u64,
    preallocated: u64,
    /// Sum of a hash of (variant, listing, state): independent of thread count.
    checksum: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Tally {
    fn add(&mut self, variant: usize, results: &[ListingAvailability]) {
        for (k, r) in results.iter().enumerate() {
            let state = &r.state;
            self.listings += 1;
            self.quantity += state.quantity;
            let code = match state.availability {
                Availability::InStock => {
                    self.in_stock += 1;
                    1
                }
                Availability::OutOfStock => {
                    self.out_of_stock += 1;
                    2
                }
                Availability::Backorder => {
                    self.backorder += 1;
                    3
                }
            };
            if r.explain.iter().any(|s| {
                matches!(
                    s,
                    stockd_core::availability::ExplainStep::Preallocation { .. }
                )
            }) {
                self.preallocated += 1;
            }
            let (lo, hi) = state.ship_window_days.unwrap_or((0, 0));
            let h = splitmix((variant as u64) << 3 | k as u64)
                ^ splitmix(state.quantity as u64 ^ code << 40)
                ^ splitmix(u64::from(lo) << 32 | u64::from(hi) | 1 << 63);
            self.checksum = self.checksum.wrapping_add(h);
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.listings += other.listings;
        self.quantity += other.quantity;
        self.in_stock += other.in_stock;
        self.out_of_stock += other.out_of_stock;
        self.backorder += other.backorder;
        self.preallocated += other.preallocated;
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }
}

fn world_stock(world: &World) -> impl Fn(usize, &Sku, usize) -> Quantities + '_ {
    move |i, _, l| world.quantities(i, l)
}

/// Every variant, split into `threads` contiguous ranges. With `compute`
/// false only the inputs are built (what the store's loading costs here).
fn full(world: &World, ctx: &Context<'_>, threads: usize, compute: bool) -> Tally {
    let n = world.rows.len();
    let chunk = n.div_ceil(threads);
    let mut total = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                scope.spawn(move || {
                    let mut scratch = Scratch::new(world);
                    let stock = world_stock(world);
                    let mut tally = Tally::default();
                    for i in range {
                        let variant = scratch.fill(world, i, &stock);
                        if compute {
                            let results = compute_variant(ctx, &scratch.input(&variant));
                            tally.add(i, &results);
                        } else {
                            tally.listings += scratch.listings.len() as u64;
                        }
                    }
                    tally
                })
            })
            .collect();
        for handle in handles {
            total.merge(&handle.join().expect("bench thread"));
        }
    });
    total
}

// ---------------------------------------------------------------------------
// Incremental: one event, then the affected listings.

struct Percentiles {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn percentiles(mut ns: Vec<u64>) -> Percentiles {
    if ns.is_empty() {
        ns.push(0);
    }
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1_000.0;
    Percentiles {
        mean_us: ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64 / 1_000.0,
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: at(1.0),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

fn percentiles_json(p: &Percentiles) -> serde_json::Value {
    json!({
        "mean_us": round3(p.mean_us),
        "p50_us": round3(p.p50_us),
        "p99_us": round3(p.p99_us),
        "max_us": round3(p.max_us),
    })
}

struct Incremental {
    per_event: Percentiles,
    /// Events whose recompute covered more than one sku (kits involved).
    multi_sku: Option<Percentiles>,
    multi_sku_events: usize,
    apply_mean_us: f64,
    recompute_mean_us: f64,
    receipts: usize,
    orders: usize,
    affected_skus: usize,
    tally: Tally,
}

fn random_event(world: &World, rng: &mut XorShift, n: usize) -> (usize, EventKind) {
    let i = rng.below(world.rows.len());
    let sku = world.sku(i);
    let event = if rng.chance(50) {
        let location = match rng.below(10) {
            0..=5 => 0,
            6..=8 => 1,
            _ => 2,
        };
        EventKind::Receipt {
            sku,
            location: world.location_ids[location].clone(),
            qty: 1 + rng.below(50) as i64,
            reason: None,
        }
    } else {
        EventKind::Order {
            order: OrderRef {
                channel: Some(world.channel_ids[rng.below(CHANNELS.len())].clone()),
                order_id: id(OrderId::parse, &format!("B-{n}")),
            },
            lines: vec![OrderLine {
                line_id: id(LineId::parse, "1"),
                sku,
                qty: 1 + rng.below(3) as i64,
                location: None,
            }],
        }
    };
    (i, event)
}

fn incremental(
    world: &mut World,
    ctx: &Context<'_>,
    graph: &BundleGraph,
    events: usize,
    rng: &mut XorShift,
) -> Incremental {
    let mut per_event = Vec::with_capacity(events);
    let mut multi_sku = Vec::new();
    let (mut apply_ns, mut recompute_ns) = (0u64, 0u64);
    let (mut receipts, mut orders, mut affected_skus) = (0, 0, 0);
    let mut tally = Tally::default();
    let mut scratch = Scratch::new(world);
    let mut done = 0;
    while done < events {
        // Untimed, as the store's loading: the group's events and every row
        // their recompute reads.
        let group: Vec<(usize, EventKind)> = (done..(done + GROUP).min(events))
            .map(|n| random_event(world, rng, n))
            .collect();
        let mut load: BTreeSet<usize> = BTreeSet::new();
        for (i, _) in &group {
            let mut changed = vec![*i];
            changed.extend(world.components(*i).iter().map(|&(c, _)| c as usize));
            for c in changed {
                load.insert(c);
                let sku = world.sku(c);
                load.extend(graph.affected_skus(&sku).iter().map(World::index_of));
            }
        }
        let kits_components: Vec<usize> = load
            .iter()
            .flat_map(|&i| world.components(i).iter().map(|&(c, _)| c as usize))
            .collect();
        load.extend(kits_components);
        let mut book = Book::new(world.locations.iter().cloned());
        for &i in &load {
            let sku = world.sku(i);
            for (l, location) in world.location_ids.iter().enumerate() {
                let key = StockKey {
                    sku: sku.clone(),
                    location: location.clone(),
                };
                book.load_stock(key, world.quantities(i, l));
            }
            if world.is_kit(i) {
                let components = world
                    .components(i)
                    .iter()
                    .map(|&(c, qty)| (world.sku(c as usize), i64::from(qty)))
                    .collect();
                book.load_kit(sku.clone(), components);
            }
            book.load_variant(sku);
        }

        for (_, event) in &group {
            match event {
                EventKind::Receipt { .. } => receipts += 1,
                _ => orders += 1,
            }
            let t0 = Instant::now();
            let applied = apply(&mut book, event).expect("bench events apply");
            let t1 = Instant::now();
            let mut affected: BTreeSet<Sku> = BTreeSet::new();
            for change in &applied.changes {
                if !affected.contains(&change.sku) {
                    affected.extend(graph.affected_skus(&change.sku));
                }
            }
            let stock = |_: usize, sku: &Sku, l: usize| {
                book.quantities(&StockKey {
                    sku: sku.clone(),
                    location: world.location_ids[l].clone(),
                })
            };
            for sku in &affected {
                let i = World::index_of(sku);
                let variant = scratch.fill(world, i, &stock);
                let results = compute_variant(ctx, &scratch.input(&variant));
                tally.add(i, &results);
            }
            let t2 = Instant::now();
            affected_skus += affected.len();
            let a = (t1 - t0).as_nanos() as u64;
            let r = (t2 - t1).as_nanos() as u64;
            apply_ns += a;
            recompute_ns += r;
            per_event.push(a + r);
            if affected.len() > 1 {
                multi_sku.push(a + r);
            }
        }

        // Untimed, as the store's write: the changed rows back into the world.
        for (key, q) in book.changed_stock() {
            let i = World::index_of(&key.sku);
            let l = world
                .location_ids
                .iter()
                .position(|id| *id == key.location)
                .expect("bench location");
            world.rows[i].stock[l] = (
                i32::try_from(q.on_hand).expect("bench stock fits i32"),
                i32::try_from(q.reserved).expect("bench stock fits i32"),
            );
        }
        done += group.len();
    }
    let n = per_event.len().max(1) as f64;
    let multi_sku_events = multi_sku.len();
    Incremental {
        per_event: percentiles(per_event),
        multi_sku: (!multi_sku.is_empty()).then(|| percentiles(multi_sku)),
        multi_sku_events,
        apply_mean_us: apply_ns as f64 / n / 1_000.0,
        recompute_mean_us: recompute_ns as f64 / n / 1_000.0,
        receipts,
        orders,
        affected_skus,
        tally,
    }
}

/// One variant's full recompute with pre-allocation off and on, on random
/// variants (inputs built untimed; the two orders alternate).
fn baseline(
    world: &World,
    off: &Context<'_>,
    on: &Context<'_>,
    rng: &mut XorShift,
) -> (Percentiles, Percentiles, usize) {
    let mut scratch = Scratch::new(world);
    let stock = world_stock(world);
    let (mut off_ns, mut on_ns) = (Vec::new(), Vec::new());
    let mut low_stock = 0;
    for s in 0..BASELINE_SAMPLES.min(world.rows.len()) {
        let i = rng.below(world.rows.len());
        let variant = scratch.fill(world, i, &stock);
        let input = scratch.input(&variant);
        let time = |ctx: &Context<'_>| {
            let t = Instant::now();
            let results = std::hint::black_box(compute_variant(ctx, &input));
            let ns = t.elapsed().as_nanos() as u64;
            (ns, results)
        };
        let ((a, _), (b, results)) = if s % 2 == 0 {
            (time(off), time(on))
        } else {
            let b = time(on);
            (time(off), b)
        };
        off_ns.push(a);
        on_ns.push(b);
        if results.iter().any(|r| {
            r.explain.iter().any(|s| {
                matches!(
                    s,
                    stockd_core::availability::ExplainStep::Preallocation { .. }
                )
            })
        }) {
            low_stock += 1;
        }
    }
    (percentiles(off_ns), percentiles(on_ns), low_stock)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

fn tally_json(t: &Tally) -> serde_json::Value {
    json!({
        "listings": t.listings,
        "quantity_sum": t.quantity,
        "in_stock": t.in_stock,
        "out_of_stock": t.out_of_stock,
        "backorder": t.backorder,
        "preallocated": t.preallocated,
        "checksum": format!("{:016x}", t.checksum),
    })
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let mut rng = XorShift(SEED);

    let started = Instant::now();
    let mut world = generate(options.variants, &mut rng)?;
    let graph = bundle_graph(&world)?;
    let generate_seconds = started.elapsed().as_secs_f64();

    let doc = rules_document();
    let started = Instant::now();
    let rules = validate(&doc, &world)?;
    let validate_us = started.elapsed().as_secs_f64() * 1e6;
    let rules_off = validate(
        &RulesDocument {
            preallocation: None,
            ..doc.clone()
        },
        &world,
    )?;
    let today = serde_json::from_value(json!("2025-06-01"))?;
    let now = serde_json::from_value(json!("2025-06-01T12:00:00Z"))?;
    let channels = world.channels.clone();
    let locations = world.locations.clone();
    let ctx = Context::new(&rules, &channels, &locations, today, now);
    let ctx_off = Context::new(&rules_off, &channels, &locations, today, now);

    let started = Instant::now();
    let built = full(&world, &ctx, options.threads, false);
    let build_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let tally = full(&world, &ctx, options.threads, true);
    let full_seconds = started.elapsed().as_secs_f64();
    let full_peak = peak_rss_mib();
    let single_thread_seconds = if options.threads > 1 {
        let started = Instant::now();
        let single = full(&world, &ctx, 1, true);
        assert_eq!(
            single.checksum, tally.checksum,
            "thread count changed results"
        );
        Some(round3(started.elapsed().as_secs_f64()))
    } else {
        None
    };
    assert_eq!(built.listings, tally.listings);

    let (off, on, low_stock) = baseline(&world, &ctx_off, &ctx, &mut rng);

    let inc = incremental(&mut world, &ctx, &graph, options.events, &mut rng);
    let events = options.events.max(1) as f64;

    let line = json!({
        "bench": "availability",
        "variants": options.variants,
        "kits": world.kits.len(),
        "locations": LOCATIONS.len(),
        "channels": CHANNELS.len(),
        "generate_seconds": round3(generate_seconds),
        "rules_validate_us": round3(validate_us),
        "full": {
            "threads": options.threads,
            "seconds": round3(full_seconds),
            "listings_computed": tally.listings,
            "listings_per_second": (tally.listings as f64 / full_seconds).round(),
            "seconds_1_thread": single_thread_seconds,
            "input_build_only_seconds": round3(build_seconds),
            "results": tally_json(&tally),
            "peak_rss_mib": full_peak,
        },
        "incremental": {
            "events": options.events,
            "receipts": inc.receipts,
            "orders": inc.orders,
            "group_size": GROUP,
            "apply_plus_recompute": percentiles_json(&inc.per_event),
            "kit_events": inc.multi_sku_events,
            "kit_events_apply_plus_recompute": inc.multi_sku.as_ref().map(percentiles_json),
            "apply_mean_us": round3(inc.apply_mean_us),
            "recompute_mean_us": round3(inc.recompute_mean_us),
            "affected_skus_per_event": round3(inc.affected_skus as f64 / events),
            "listings_per_event": round3(inc.tally.listings as f64 / events),
            "results": tally_json(&inc.tally),
        },
        "baseline_one_variant": {
            "samples": BASELINE_SAMPLES.min(options.variants),
            "low_stock_samples": low_stock,
            "listings_per_variant": CHANNELS.len(),
            "preallocation_off": percentiles_json(&off),
            "preallocation_on": percentiles_json(&on),
        },
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
    Ok(())
}
