//! Property tests of channel availability over many random worlds (a tiny
//! xorshift generator with fixed seeds, so every failure reproduces).
//!
//! A world: locations W1, W2, W3 (sellable) and Q (not sellable); one to four
//! channels, each on every sellable location or on a random subset (Q may be
//! named, and never counts); plain variants A–D and kits K1 (of plain
//! variants) and K2 (of K1 and plain variants), each with random stock rows
//! (some oversold); random listings with ranks, inbound lines and sales; a
//! random rules document (defaults, channel values, overrides by sku glob or
//! product id, optionally pre-allocation by explicit order or by velocity,
//! optionally ETA).
//!
//! What is asserted, precisely:
//! - **exposure**: every listing's quantity is ≥ 0 and ≤ max(0, pool −
//!   safety_stock), where pool is computed here independently (Σ on_hand −
//!   reserved over the channel's sellable locations, floored at 0; for a kit,
//!   pre-built + min over components ⌊component pool / qty⌋) and safety_stock
//!   is the effective value; ≤ max_exposed when one applies. This holds
//!   with pre-allocation too (a share never exceeds the listing's own rule
//!   result); in partition mode the exposures of a variant sum to at most
//!   its pool over every sellable location. A quantity is 0 or
//!   ≥ min_listed, partition shares included.
//! - **more stock** (a receipt applied with `ledger::apply`, at any location
//!   of any variant or pre-built kit): with pre-allocation off, every
//!   listing's quantity is non-decreasing, and unchanged when the channel
//!   does not count the location. With pre-allocation on, a variant's total
//!   exposure is non-decreasing and a listing's quantity can only drop when
//!   it was served from a partition after the receipt and another listing of
//!   the same variant rose (an earlier-ranked listing took more of the
//!   pool); a cap (`max_exposed`) is never exceeded either way.
//! - **kits**: a kit listing's quantity ≤ pre-built pool + min over
//!   components ⌊component pool / qty⌋ over the channel's locations, and
//!   the kit step of the explain trail carries exactly that pool.
//! - **rollback**: computing under rules A, then B, then A again (each
//!   validated afresh, A also after a JSON round trip of its document, as a
//!   stored version is) gives exactly the first results, explain included.
//! - **states only**: computing without explain trails gives exactly the
//!   states computed with them (the writer and whole-catalog passes rely on it).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use std::collections::{BTreeMap, BTreeSet};
use stockd_core::availability::{
    compute_variant, Channel, ComponentStock, Context, ExplainStep, Listing, ListingAvailability,
    Sale, VariantInput,
};
use stockd_core::event::EventKind;
use stockd_core::ledger::apply;
use stockd_core::rules::{
    EtaDoc, MatchDoc, OverrideDoc, PreallocationDoc, RuleValues, Rules, RulesDocument,
};
use stockd_core::stock::{InboundLine, Quantities, StockKey};
use stockd_core::{Book, ChannelId, Location, LocationId, PoId, Sku, Variant};

// ---------------------------------------------------------------------------
// Generator.

/// A tiny xorshift PRNG: deterministic, no dependencies.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn sku(raw: &str) -> Sku {
    Sku::parse(raw).unwrap()
}

fn loc(raw: &str) -> LocationId {
    LocationId::parse(raw).unwrap()
}

const LOCATIONS: [&str; 4] = ["W1", "W2", "W3", "Q"];
const CHANNELS: [&str; 4] = ["shop", "bol", "amazon", "gmc"];
const PLAIN: [&str; 4] = ["A", "B", "C", "D"];
/// Kits in definition order: a kit may contain one defined before it.
const KITS: [&str; 2] = ["K1", "K2"];

#[derive(Clone)]
struct World {
    locations: Vec<Location>,
    channels: Vec<Channel>,
    products: BTreeMap<Sku, String>,
    stock: BTreeMap<Sku, Vec<(LocationId, Quantities)>>,
    kits: BTreeMap<Sku, Vec<(Sku, u32)>>,
    listings: Vec<Listing>,
    inbound: Vec<InboundLine>,
    sales: Vec<Sale>,
}

fn random_world(rng: &mut XorShift) -> World {
    let locations = LOCATIONS
        .iter()
        .enumerate()
        .map(|(i, id)| Location {
            id: loc(id),
            name: id.to_string(),
            sellable: *id != "Q",
            priority: i as i32,
        })
        .collect();
    let n_channels = 1 + rng.below(CHANNELS.len() as u64) as usize;
    let channels: Vec<Channel> = CHANNELS[..n_channels]
        .iter()
        .map(|id| Channel {
            id: ChannelId::parse(*id).unwrap(),
            locations: rng.chance(60).then(|| {
                LOCATIONS
                    .iter()
                    .filter(|_| rng.chance(50))
                    .map(|l| loc(l))
                    .collect()
            }),
            supports_backorder: rng.chance(50),
            max_quantity: None,
        })
        .collect();

    let mut kits = BTreeMap::new();
    for (k, kit) in KITS.iter().enumerate() {
        let mut candidates: Vec<&str> = PLAIN.to_vec();
        candidates.extend(&KITS[..k]);
        let mut components: Vec<(Sku, u32)> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let c = sku(rng.pick(&candidates));
            if components.iter().all(|(s, _)| *s != c) {
                components.push((c, 1 + rng.below(3) as u32));
            }
        }
        kits.insert(sku(kit), components);
    }

    let all: Vec<&str> = PLAIN.iter().chain(KITS.iter()).copied().collect();
    let mut products = BTreeMap::new();
    let mut stock = BTreeMap::new();
    let mut listings = Vec::new();
    let mut inbound = Vec::new();
    let mut sales = Vec::new();
    for s in &all {
        let is_kit = s.starts_with('K');
        if rng.chance(60) {
            products.insert(sku(s), rng.pick(&["P1", "P2"]).to_string());
        }
        let mut rows: Vec<(LocationId, Quantities)> = Vec::new();
        for l in LOCATIONS {
            if !rng.chance(if is_kit { 35 } else { 75 }) {
                continue;
            }
            let on_hand = rng.below(if is_kit { 4 } else { 13 });
            // Mostly within on_hand; sometimes oversold.
            let reserved = if rng.chance(15) {
                on_hand + 1 + rng.below(4)
            } else {
                rng.below(on_hand as u64 / 2 + 1)
            };
            let q = Quantities {
                on_hand,
                reserved,
                ..Quantities::default()
            };
            rows.push((loc(l), q));
        }
        stock.insert(sku(s), rows);
        for channel in &channels {
            if rng.chance(80) {
                listings.push(Listing {
                    channel: channel.id.clone(),
                    sku: sku(s),
                    rank: rng.chance(25).then(|| rng.below(3) as i32),
                });
            }
            if rng.chance(40) {
                sales.push(Sale {
                    channel: channel.id.clone(),
                    sku: sku(s),
                    qty: 1 + rng.below(6),
                    at: now() - Duration::hours(rng.below(24 * 10)),
                });
            }
        }
        for n in 0..rng.below(3) {
            inbound.push(InboundLine {
                po_id: PoId::parse(format!("PO{n}")).unwrap(),
                sku: sku(s),
                location: loc(rng.pick(&LOCATIONS)),
                qty: rng.below(6),
                eta: Some(today() + Duration::days(rng.below(24) - 3)),
                confirmed: rng.chance(70),
            });
        }
    }
    World {
        locations,
        channels,
        products,
        stock,
        kits,
        listings,
        inbound,
        sales,
    }
}

fn random_values(rng: &mut XorShift) -> RuleValues {
    let mut maybe = |percent: u64, value: i64| rng.chance(percent).then_some(value);
    let safety_stock = maybe(50, 0);
    let percent = maybe(40, 0);
    let max_exposed = maybe(35, 0);
    let min_listed = maybe(30, 0);
    RuleValues {
        safety_stock: safety_stock.map(|_| rng.below(6)),
        percent: percent.map(|_| rng.pick(&[0, 33, 50, 75, 99, 100])),
        max_exposed: max_exposed.map(|_| rng.below(16)),
        min_listed: min_listed.map(|_| rng.below(6)),
    }
}

/// A random, valid rules document for the world's channels.
fn random_doc(rng: &mut XorShift, world: &World) -> RulesDocument {
    let names: Vec<String> = world
        .channels
        .iter()
        .map(|c| c.id.as_str().to_string())
        .collect();
    let mut doc = RulesDocument {
        defaults: random_values(rng),
        ..RulesDocument::default()
    };
    for name in &names {
        if rng.chance(60) {
            doc.channels.insert(name.clone(), random_values(rng));
        }
    }
    for _ in 0..rng.below(4) {
        let matcher = if rng.chance(75) {
            MatchDoc {
                sku: Some(rng.pick(&["A", "K*", "*", "B*", "*2", "K1"]).to_string()),
                product_id: None,
            }
        } else {
            MatchDoc {
                sku: None,
                product_id: Some(rng.pick(&["P1", "P2"]).to_string()),
            }
        };
        let channels = rng.chance(40).then(|| {
            names
                .iter()
                .filter(|_| rng.chance(50))
                .cloned()
                .collect::<Vec<_>>()
        });
        doc.overrides.push(OverrideDoc {
            matcher,
            channels,
            set: random_values(rng),
        });
    }
    if rng.chance(60) {
        let mut p = PreallocationDoc {
            low_stock_threshold: Some(rng.below(25)),
            ..PreallocationDoc::default()
        };
        if rng.chance(60) {
            let mut order: Vec<String> = names.clone();
            // A random rotation, sometimes leaving the last channel out.
            let by = rng.below(order.len() as u64) as usize;
            order.rotate_left(by);
            if order.len() > 1 && rng.chance(30) {
                order.pop();
            }
            p.order = Some(order);
        } else {
            p.by = Some("velocity".into());
            p.window_days = Some(1 + rng.below(7));
        }
        doc.preallocation = Some(p);
    }
    if rng.chance(60) {
        let min = rng.below(4);
        doc.eta = Some(EtaDoc {
            backorder_within_days: Some(rng.below(15)),
            handling_days: Some((min, min + rng.below(4))),
        });
    }
    doc
}

// ---------------------------------------------------------------------------
// Computing, the way a store does: one context, one call per variant.

impl World {
    fn validate(&self, doc: &RulesDocument) -> Rules {
        let known: Vec<ChannelId> = self.channels.iter().map(|c| c.id.clone()).collect();
        doc.validate(&known)
            .unwrap_or_else(|e| panic!("generated rules are invalid: {e:?}\n{doc:?}"))
    }

    fn variant(&self, s: &Sku) -> Variant {
        Variant {
            sku: s.clone(),
            title: None,
            product_id: self.products.get(s).cloned(),
            gtin: None,
        }
    }

    fn rows(&self, s: &Sku) -> Vec<(LocationId, Quantities)> {
        self.stock.get(s).cloned().unwrap_or_default()
    }

    fn components(&self, kit: &Sku) -> Vec<ComponentStock> {
        self.kits
            .get(kit)
            .into_iter()
            .flatten()
            .map(|(s, q)| ComponentStock {
                sku: s.clone(),
                qty_per_kit: *q,
                stock: self.rows(s),
                components: self.components(s),
            })
            .collect()
    }

    /// Every listing, grouped by sku (sorted), each group in listing order.
    fn compute(&self, rules: &Rules) -> Vec<ListingAvailability> {
        self.compute_in(&Context::new(
            rules,
            &self.channels,
            &self.locations,
            today(),
            now(),
        ))
    }

    fn compute_states(&self, rules: &Rules) -> Vec<ListingAvailability> {
        self.compute_in(
            &Context::new(rules, &self.channels, &self.locations, today(), now()).states_only(),
        )
    }

    fn compute_in(&self, ctx: &Context<'_>) -> Vec<ListingAvailability> {
        let mut skus: Vec<&Sku> = self.listings.iter().map(|l| &l.sku).collect();
        skus.sort();
        skus.dedup();
        let mut out = Vec::new();
        for s in skus {
            let variant = self.variant(s);
            let listings: Vec<Listing> = self
                .listings
                .iter()
                .filter(|l| &l.sku == s)
                .cloned()
                .collect();
            let stock = self.rows(s);
            let components = self.components(s);
            let inbound: Vec<InboundLine> = self
                .inbound
                .iter()
                .filter(|l| &l.sku == s)
                .cloned()
                .collect();
            let results = compute_variant(
                ctx,
                &VariantInput {
                    variant: &variant,
                    stock: &stock,
                    components: &components,
                    inbound: &inbound,
                    listings: &listings,
                    sales: &self.sales,
                },
            );
            assert_eq!(results.len(), listings.len());
            out.extend(results);
        }
        out
    }

    // An independent reference for pools.

    fn sellable(&self) -> Vec<LocationId> {
        self.locations
            .iter()
            .filter(|l| l.sellable)
            .map(|l| l.id.clone())
            .collect()
    }

    /// The channel's sellable locations.
    fn counted(&self, channel: &ChannelId) -> Vec<LocationId> {
        let sellable = self.sellable();
        match self.channels.iter().find(|c| &c.id == channel) {
            None => Vec::new(),
            Some(c) => match &c.locations {
                None => sellable,
                Some(named) => sellable.into_iter().filter(|l| named.contains(l)).collect(),
            },
        }
    }

    /// Σ (on_hand − reserved) over `counted`, floored at 0.
    fn own_pool(&self, s: &Sku, counted: &[LocationId]) -> i64 {
        self.rows(s)
            .iter()
            .filter(|(l, _)| counted.contains(l))
            .map(|(_, q)| q.on_hand - q.reserved)
            .sum::<i64>()
            .max(0)
    }

    /// A kit: pre-built + min over components ⌊pool / qty⌋; else the own pool.
    fn pool(&self, s: &Sku, counted: &[LocationId]) -> i64 {
        match self.kits.get(s) {
            None => self.own_pool(s, counted),
            Some(components) => {
                let built = components
                    .iter()
                    .map(|(c, q)| self.pool(c, counted) / i64::from(*q))
                    .min()
                    .unwrap_or(0)
                    .max(0);
                self.own_pool(s, counted) + built
            }
        }
    }

    /// Adds `qty` on hand at one row through the ledger, as a receipt does.
    fn receive(&mut self, s: &Sku, location: &LocationId, qty: i64) {
        let key = StockKey {
            sku: s.clone(),
            location: location.clone(),
        };
        let rows = self.stock.entry(s.clone()).or_default();
        let before = rows
            .iter()
            .find(|(l, _)| l == location)
            .map(|(_, q)| *q)
            .unwrap_or_default();
        let mut book = Book::new(self.locations.iter().cloned());
        book.load_variant(s.clone());
        book.load_stock(key.clone(), before);
        let event = EventKind::Receipt {
            sku: s.clone(),
            location: location.clone(),
            qty,
            reason: None,
        };
        apply(&mut book, &event).expect("a receipt of a known variant applies");
        let after = book.quantities(&key);
        assert_eq!(after.on_hand, before.on_hand + qty);
        match rows.iter_mut().find(|(l, _)| l == location) {
            Some(row) => row.1 = after,
            None => rows.push((location.clone(), after)),
        }
    }
}

fn preallocated(result: &ListingAvailability) -> bool {
    result
        .explain
        .iter()
        .any(|s| matches!(s, ExplainStep::Preallocation { .. }))
}

fn show(results: &[ListingAvailability]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{} {}: {} {:?}",
                r.channel, r.sku, r.state.quantity, r.state.availability
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// Properties.

#[test]
fn exposure_never_exceeds_pool_minus_safety_stock() {
    let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
    let mut partitioned_variants = 0;
    for round in 0..400 {
        let world = random_world(&mut rng);
        let doc = random_doc(&mut rng, &world);
        let without = RulesDocument {
            preallocation: None,
            ..doc.clone()
        };
        for doc in [&without, &doc] {
            let rules = world.validate(doc);
            let results = world.compute(&rules);
            let context = || format!("round {round}\n{doc:?}\n{}", show(&results));
            for r in &results {
                let variant = world.variant(&r.sku);
                let rule = rules.effective(&r.channel, &variant);
                let pool = world.pool(&r.sku, &world.counted(&r.channel));
                let q = r.state.quantity;
                assert!(q >= 0, "{}", context());
                assert!(
                    q <= (pool - rule.safety_stock.value).max(0),
                    "{} {}: {q} > max(0, pool {pool} − safety stock {})\n{}",
                    r.channel,
                    r.sku,
                    rule.safety_stock.value,
                    context()
                );
                if let Some(cap) = rule.max_exposed.value {
                    assert!(q <= cap, "{}: above the cap {cap}", context());
                }
                // Partition shares below min_listed are 0 as well.
                assert!(
                    q == 0 || q >= rule.min_listed.value,
                    "{}: below min_listed",
                    context()
                );
            }
            // Partition mode: Σ exposures of a variant ≤ its pool over every
            // sellable location.
            if let Some(pre) = rules.preallocation() {
                let mut sums: BTreeMap<&Sku, i64> = BTreeMap::new();
                for r in &results {
                    *sums.entry(&r.sku).or_default() += r.state.quantity;
                }
                for (s, sum) in sums {
                    let pool = world.pool(s, &world.sellable());
                    if pool <= pre.low_stock_threshold {
                        partitioned_variants += 1;
                        assert!(sum <= pool, "{s}: Σ {sum} > pool {pool}\n{}", context());
                    }
                }
            }
        }
    }
    assert!(
        partitioned_variants > 100,
        "the generator should exercise partition mode"
    );
}

#[test]
fn more_stock_never_lowers_a_quantity_except_through_preallocation_order() {
    let mut rng = XorShift(0x0DDB_A11C_AFE0_0001);
    let mut order_effects = 0;
    let mut rises = 0;
    for round in 0..300 {
        let mut world = random_world(&mut rng);
        let doc = random_doc(&mut rng, &world);
        let off_doc = RulesDocument {
            preallocation: None,
            ..doc.clone()
        };
        let on = world.validate(&doc);
        let off = world.validate(&off_doc);
        let skus: Vec<Sku> = world.stock.keys().cloned().collect();
        let mut before_on = world.compute(&on);
        let mut before_off = world.compute(&off);
        for step in 0..4 {
            let s = skus[rng.below(skus.len() as u64) as usize].clone();
            let location = loc(rng.pick(&LOCATIONS));
            let qty = 1 + rng.below(8);
            world.receive(&s, &location, qty);
            let after_on = world.compute(&on);
            let after_off = world.compute(&off);
            let context = |b: &[ListingAvailability], a: &[ListingAvailability]| {
                format!(
                    "round {round} step {step}: +{qty} {s} at {location}\n{doc:?}\nbefore:\n{}\nafter:\n{}",
                    show(b),
                    show(a)
                )
            };

            // Pre-allocation off: monotone, and untouched where the location
            // does not count.
            for (b, a) in before_off.iter().zip(&after_off) {
                assert_eq!((&b.channel, &b.sku), (&a.channel, &a.sku));
                assert!(
                    a.state.quantity >= b.state.quantity,
                    "{} {} dropped\n{}",
                    a.channel,
                    a.sku,
                    context(&before_off, &after_off)
                );
                if a.state.quantity > b.state.quantity {
                    rises += 1;
                }
                if !world.counted(&a.channel).contains(&location) {
                    assert_eq!(
                        a.state.quantity,
                        b.state.quantity,
                        "{} does not count {location}\n{}",
                        a.channel,
                        context(&before_off, &after_off)
                    );
                }
            }

            // Pre-allocation on: a variant's total never drops; a listing
            // drops only when it was partitioned after the receipt and a
            // sibling listing rose; never above the listing's own rule
            // result (the off results) nor its cap.
            let mut totals: BTreeMap<&Sku, (i64, i64)> = BTreeMap::new();
            for (b, a) in before_on.iter().zip(&after_on) {
                assert_eq!((&b.channel, &b.sku), (&a.channel, &a.sku));
                let t = totals.entry(&a.sku).or_default();
                t.0 += b.state.quantity;
                t.1 += a.state.quantity;
            }
            for (s, (b, a)) in &totals {
                assert!(
                    a >= b,
                    "{s}: total {b} → {a}\n{}",
                    context(&before_on, &after_on)
                );
            }
            for (i, (b, a)) in before_on.iter().zip(&after_on).enumerate() {
                let own = &after_off[i];
                assert!(a.state.quantity <= own.state.quantity);
                let variant = world.variant(&a.sku);
                if let Some(cap) = on.effective(&a.channel, &variant).max_exposed.value {
                    assert!(a.state.quantity <= cap);
                }
                if a.state.quantity < b.state.quantity {
                    order_effects += 1;
                    let sibling_rose = before_on
                        .iter()
                        .zip(&after_on)
                        .any(|(b2, a2)| a2.sku == a.sku && a2.state.quantity > b2.state.quantity);
                    assert!(
                        preallocated(a) && sibling_rose,
                        "{} {} dropped without a pre-allocation order effect\n{}",
                        a.channel,
                        a.sku,
                        context(&before_on, &after_on)
                    );
                }
            }
            before_on = after_on;
            before_off = after_off;
        }
    }
    assert!(rises > 100, "receipts should raise quantities");
    // Order effects are rare but real; they must have been seen for the
    // pre-allocation branch above to be exercised.
    assert!(
        order_effects > 0,
        "no pre-allocation order effect was generated"
    );
}

#[test]
fn kit_quantity_is_bounded_by_its_components_and_prebuilt_stock() {
    let mut rng = XorShift(0x00C0_FFEE_0000_0042);
    let mut kit_listings_in_stock = 0;
    for round in 0..400 {
        let world = random_world(&mut rng);
        let doc = random_doc(&mut rng, &world);
        let rules = world.validate(&doc);
        let results = world.compute(&rules);
        for r in results.iter().filter(|r| world.kits.contains_key(&r.sku)) {
            let counted = world.counted(&r.channel);
            let prebuilt = world.own_pool(&r.sku, &counted);
            let built = world.kits[&r.sku]
                .iter()
                .map(|(c, q)| world.pool(c, &counted) / i64::from(*q))
                .min()
                .unwrap_or(0)
                .max(0);
            let context = || {
                format!(
                    "round {round}: {} {} (prebuilt {prebuilt}, built {built})\n{:?}\n{:?}\n{doc:?}",
                    r.channel, r.sku, world.kits, r.explain
                )
            };
            assert!(
                r.state.quantity <= prebuilt + built,
                "{}: quantity {}",
                context(),
                r.state.quantity
            );
            let step = r.explain.iter().find_map(|s| match s {
                ExplainStep::Kit {
                    prebuilt_qty, pool, ..
                } => Some((*prebuilt_qty, *pool)),
                _ => None,
            });
            assert_eq!(step, Some((prebuilt, prebuilt + built)), "{}", context());
            if r.state.quantity > 0 {
                kit_listings_in_stock += 1;
            }
        }
    }
    assert!(kit_listings_in_stock > 50, "kits should often be in stock");
}

#[test]
fn rules_a_then_b_then_a_again_gives_exactly_the_first_results() {
    let mut rng = XorShift(0xB0B0_CAFE_1357_9BDF);
    let mut changed_by_b = 0;
    for round in 0..300 {
        let world = random_world(&mut rng);
        let doc_a = random_doc(&mut rng, &world);
        let doc_b = random_doc(&mut rng, &world);

        let first = world.compute(&world.validate(&doc_a));
        let with_b = world.compute(&world.validate(&doc_b));
        let again = world.compute(&world.validate(&doc_a));
        // A stored version comes back from its JSON form.
        let stored: RulesDocument =
            serde_json::from_str(&serde_json::to_string(&doc_a).unwrap()).unwrap();
        assert_eq!(stored, doc_a, "round {round}");
        let restored = world.compute(&world.validate(&stored));

        assert_eq!(first, again, "round {round}\n{doc_a:?}\n{doc_b:?}");
        assert_eq!(first, restored, "round {round}\n{doc_a:?}");
        assert_eq!(world.validate(&doc_a), world.validate(&stored));
        if first.iter().zip(&with_b).any(|(a, b)| a.state != b.state) {
            changed_by_b += 1;
        }
    }
    assert!(
        changed_by_b > 100,
        "rules B should usually change something"
    );
}

#[test]
fn states_without_explain_are_the_states_with_it() {
    let mut rng = XorShift(0x5EED_0F57_A7E5_0001);
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    for round in 0..400 {
        let world = random_world(&mut rng);
        let doc = random_doc(&mut rng, &world);
        let rules = world.validate(&doc);
        let full = world.compute(&rules);
        let states = world.compute_states(&rules);
        assert_eq!(full.len(), states.len(), "round {round}");
        for (f, s) in full.iter().zip(&states) {
            assert_eq!(
                (&f.channel, &f.sku, &f.state),
                (&s.channel, &s.sku, &s.state),
                "round {round}\n{doc:?}"
            );
            assert!(s.explain.is_empty(), "round {round}: {:?}", s.explain);
            for step in &f.explain {
                seen.insert(match step {
                    ExplainStep::Pool { .. } => "pool",
                    ExplainStep::Kit { .. } => "kit",
                    ExplainStep::Rule { .. } => "rule",
                    ExplainStep::NeverNegative { .. } => "never_negative",
                    ExplainStep::Preallocation { .. } => "preallocation",
                    ExplainStep::ChannelLimit { .. } => "channel_limit",
                    ExplainStep::Eta { .. } => "eta",
                });
            }
        }
    }
    // The worlds reach every kind of step, so every path was compared.
    for kind in [
        "pool",
        "kit",
        "rule",
        "never_negative",
        "preallocation",
        "eta",
    ] {
        assert!(
            seen.contains(kind),
            "no {kind} step in 400 worlds: {seen:?}"
        );
    }
}
