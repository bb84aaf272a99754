//! Channel availability, rules and their validation, bundles, ETA and the
//! change budget — data-driven through one `check`-style helper per feature.
//!
//! A world is written one item per line:
//!
//! ```text
//! locations W1 W2 Q-                  (`-` = not sellable; default `W1 W2 Q-`)
//! channel ID LOC,LOC|* [backorder]    (`*` = every sellable location)
//! variant SKU product=P               (variants default to no product id)
//! stock SKU LOC ON_HAND[/RESERVED]
//! kit KIT COMPONENTxQTY...            (a component can be a kit listed before)
//! listing CHANNEL SKU [rank=N]
//! inbound PO SKU LOC QTY +DAYS confirmed|unconfirmed   (ETA = today + DAYS)
//! sale CHANNEL SKU QTY -HOURS         (sold HOURS before now)
//! defaults KEY=V...                   (keys: safety_stock percent max_exposed min_listed)
//! rules CHANNEL KEY=V...              (channels.<id>)
//! override sku=GLOB|product=P [channels=A,B] KEY=V...
//! prealloc THRESHOLD order=A,B | velocity=DAYS
//! eta WITHIN MIN..MAX
//! budget CHANNEL=N
//! ```

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use stockd_core::availability::{
    compute_variant, decide_push, partition, validate_bundles, Availability, Bundle,
    BundleComponent, Channel, ComponentStock, Context, ExplainStep, Listing, ListingState,
    PushDecision, Sale, VariantInput,
};
use stockd_core::rules::{
    ChangeBudgetDoc, EtaDoc, MatchDoc, OverrideDoc, PreallocationDoc, RuleSource, RuleValues,
    Rules, RulesDocument,
};
use stockd_core::stock::{InboundLine, Quantities};
use stockd_core::{ChannelId, Location, LocationId, PoId, Sku, Variant};

// ---------------------------------------------------------------------------
// The world.

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn sku(raw: &str) -> Sku {
    Sku::parse(raw).unwrap()
}

fn chan(raw: &str) -> ChannelId {
    ChannelId::parse(raw).unwrap()
}

fn loc(raw: &str) -> LocationId {
    LocationId::parse(raw).unwrap()
}

fn qty(on_hand: i64, reserved: i64) -> Quantities {
    Quantities {
        on_hand,
        reserved,
        ..Quantities::default()
    }
}

#[derive(Default)]
struct World {
    locations: Vec<Location>,
    channels: Vec<Channel>,
    products: BTreeMap<Sku, String>,
    stock: BTreeMap<Sku, Vec<(LocationId, Quantities)>>,
    kits: BTreeMap<Sku, Vec<(Sku, u32)>>,
    listings: Vec<Listing>,
    inbound: Vec<InboundLine>,
    sales: Vec<Sale>,
    doc: RulesDocument,
}

fn values(words: &[&str]) -> RuleValues {
    let mut v = RuleValues::default();
    for word in words {
        let (key, value) = word.split_once('=').expect("KEY=V");
        let value: i64 = value.parse().expect("number");
        match key {
            "safety_stock" => v.safety_stock = Some(value),
            "percent" => v.percent = Some(value),
            "max_exposed" => v.max_exposed = Some(value),
            "min_listed" => v.min_listed = Some(value),
            other => panic!("unknown rule key {other}"),
        }
    }
    v
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::to_string).collect()
}

fn parse_world(script: &str) -> World {
    let mut w = World {
        locations: parse_locations(&["W1", "W2", "Q-"]),
        ..World::default()
    };
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "locations" => w.locations = parse_locations(&words[1..]),
            "channel" => w.channels.push(Channel {
                id: chan(words[1]),
                locations: (words[2] != "*").then(|| words[2].split(',').map(loc).collect()),
                supports_backorder: words[3..].contains(&"backorder"),
                max_quantity: words[3..]
                    .iter()
                    .find_map(|w| w.strip_prefix("max="))
                    .map(|v| v.parse().expect("max=N")),
            }),
            "variant" => {
                let product = words[2].strip_prefix("product=").expect("product=P");
                w.products.insert(sku(words[1]), product.to_string());
            }
            "stock" => {
                let (on_hand, reserved) = words[3].split_once('/').unwrap_or((words[3], "0"));
                w.stock.entry(sku(words[1])).or_default().push((
                    loc(words[2]),
                    qty(on_hand.parse().unwrap(), reserved.parse().unwrap()),
                ));
            }
            "kit" => {
                let components = words[2..]
                    .iter()
                    .map(|c| {
                        let (s, q) = c.rsplit_once('x').expect("SKUxQTY");
                        (sku(s), q.parse().unwrap())
                    })
                    .collect();
                w.kits.insert(sku(words[1]), components);
            }
            "listing" => w.listings.push(Listing {
                channel: chan(words[1]),
                sku: sku(words[2]),
                rank: words
                    .get(3)
                    .map(|r| r.strip_prefix("rank=").unwrap().parse().unwrap()),
            }),
            "inbound" => w.inbound.push(InboundLine {
                po_id: PoId::parse(words[1]).unwrap(),
                sku: sku(words[2]),
                location: loc(words[3]),
                qty: words[4].parse().unwrap(),
                eta: Some(today() + Duration::days(words[5].parse().unwrap())),
                confirmed: words[6] == "confirmed",
            }),
            "sale" => w.sales.push(Sale {
                channel: chan(words[1]),
                sku: sku(words[2]),
                qty: words[3].parse().unwrap(),
                at: now() + Duration::hours(words[4].parse().unwrap()),
            }),
            "defaults" => w.doc.defaults = values(&words[1..]),
            "rules" => {
                w.doc
                    .channels
                    .insert(words[1].to_string(), values(&words[2..]));
            }
            "override" => {
                let mut o = OverrideDoc::default();
                let mut rest = Vec::new();
                for word in &words[1..] {
                    if let Some(p) = word.strip_prefix("sku=") {
                        o.matcher.sku = Some(p.to_string());
                    } else if let Some(p) = word.strip_prefix("product=") {
                        o.matcher.product_id = Some(p.to_string());
                    } else if let Some(c) = word.strip_prefix("channels=") {
                        o.channels = Some(list(c));
                    } else {
                        rest.push(*word);
                    }
                }
                o.set = values(&rest);
                w.doc.overrides.push(o);
            }
            "prealloc" => {
                let mut p = PreallocationDoc {
                    low_stock_threshold: Some(words[1].parse().unwrap()),
                    ..PreallocationDoc::default()
                };
                for word in &words[2..] {
                    if let Some(o) = word.strip_prefix("order=") {
                        p.order = Some(list(o));
                    } else if let Some(d) = word.strip_prefix("velocity=") {
                        p.by = Some("velocity".into());
                        p.window_days = Some(d.parse().unwrap());
                    } else {
                        panic!("bad prealloc {word}");
                    }
                }
                w.doc.preallocation = Some(p);
            }
            "eta" => {
                let (min, max) = words[2].split_once("..").unwrap();
                w.doc.eta = Some(EtaDoc {
                    backorder_within_days: Some(words[1].parse().unwrap()),
                    handling_days: Some((min.parse().unwrap(), max.parse().unwrap())),
                });
            }
            "budget" => {
                let (c, n) = words[1].split_once('=').unwrap();
                w.doc
                    .change_budget
                    .get_or_insert_with(ChangeBudgetDoc::default)
                    .per_day
                    .insert(c.to_string(), n.parse().unwrap());
            }
            other => panic!("unknown directive {other}"),
        }
    }
    w
}

fn parse_locations(words: &[&str]) -> Vec<Location> {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let (id, sellable) = match w.strip_suffix('-') {
                Some(id) => (id, false),
                None => (*w, true),
            };
            Location {
                id: loc(id),
                name: id.to_string(),
                sellable,
                priority: i as i32,
            }
        })
        .collect()
}

impl World {
    fn rules(&self) -> Rules {
        let known: Vec<ChannelId> = self.channels.iter().map(|c| c.id.clone()).collect();
        self.doc
            .validate(&known)
            .unwrap_or_else(|e| panic!("invalid rules: {e:?}"))
    }

    fn variant(&self, s: &Sku) -> Variant {
        Variant {
            sku: s.clone(),
            title: None,
            product_id: self.products.get(s).cloned(),
            gtin: None,
        }
    }

    fn components(&self, kit: &Sku) -> Vec<ComponentStock> {
        self.kits
            .get(kit)
            .into_iter()
            .flatten()
            .map(|(s, q)| ComponentStock {
                sku: s.clone(),
                qty_per_kit: *q,
                stock: self.stock.get(s).cloned().unwrap_or_default(),
                components: self.components(s),
            })
            .collect()
    }

    /// Every listing, computed variant by variant as a store would.
    fn compute(&self) -> Vec<stockd_core::availability::ListingAvailability> {
        let rules = self.rules();
        let ctx = Context::new(&rules, &self.channels, &self.locations, today(), now());
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
            let stock = self.stock.get(s).cloned().unwrap_or_default();
            let components = self.components(s);
            let inbound: Vec<InboundLine> = self
                .inbound
                .iter()
                .filter(|l| &l.sku == s)
                .cloned()
                .collect();
            out.extend(compute_variant(
                &ctx,
                &VariantInput {
                    variant: &variant,
                    stock: &stock,
                    components: &components,
                    inbound: &inbound,
                    listings: &listings,
                    sales: &self.sales,
                },
            ));
        }
        out
    }
}

fn normalize(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_text(what: &str, input: &str, actual: &str, expect: &str) {
    let (actual, expect) = (normalize(actual), normalize(expect));
    if actual != expect {
        panic!(
            "{what} failed\n--- input\n{}\n--- expected\n{expect}\n--- actual\n{actual}\n",
            normalize(input)
        );
    }
}

fn show_state(state: &ListingState) -> String {
    let mut s = format!(
        "{} {}",
        state.quantity,
        match state.availability {
            Availability::InStock => "in_stock",
            Availability::OutOfStock => "out_of_stock",
            Availability::Backorder => "backorder",
        }
    );
    if let Some(eta) = state.eta {
        write!(s, " eta=+{}d", (eta - today()).num_days()).unwrap();
    }
    if let Some((min, max)) = state.ship_window_days {
        write!(s, " ships={min}..{max}").unwrap();
    }
    s
}

/// Checks the computed state of every listing: `CHANNEL SKU: QTY AVAILABILITY [eta=+Nd ships=A..B]`.
#[track_caller]
fn check(script: &str, expect: &str) {
    let world = parse_world(script);
    let mut actual = String::new();
    for r in world.compute() {
        writeln!(actual, "{} {}: {}", r.channel, r.sku, show_state(&r.state)).unwrap();
    }
    assert_text("availability", script, &actual, expect);
}

fn show_source(source: RuleSource) -> String {
    match source {
        RuleSource::Builtin => "builtin".into(),
        RuleSource::Default => "default".into(),
        RuleSource::Channel => "channel".into(),
        RuleSource::Override(i) => format!("override[{i}]"),
    }
}

/// Checks the explain steps of one listing, one compact line per step.
#[track_caller]
fn check_explain(script: &str, channel: &str, sku_raw: &str, expect: &str) {
    let world = parse_world(script);
    let result = world
        .compute()
        .into_iter()
        .find(|r| r.channel.as_str() == channel && r.sku.as_str() == sku_raw)
        .expect("listing");
    let mut actual = String::new();
    for step in &result.explain {
        let line = match step {
            ExplainStep::Pool { locations, pool } => {
                let parts: Vec<String> = locations
                    .iter()
                    .map(|l| format!("{}={}-{}→{}", l.location, l.on_hand, l.reserved, l.net_qty))
                    .collect();
                format!("pool {} = {pool}", parts.join(" "))
            }
            ExplainStep::Kit {
                prebuilt_qty,
                components,
                pool,
                ..
            } => {
                let parts: Vec<String> = components
                    .iter()
                    .map(|c| format!("{}:{}/{}→{}", c.sku, c.pool, c.qty_per_kit, c.kits))
                    .collect();
                format!("kit prebuilt={prebuilt_qty} {} = {pool}", parts.join(" "))
            }
            ExplainStep::Rule {
                rule,
                value,
                source,
                before,
                after,
            } => format!(
                "{} {} ({}) {before}→{after}",
                serde_name(rule),
                value.map_or("none".to_string(), |v| v.to_string()),
                show_source(*source)
            ),
            ExplainStep::NeverNegative { before, after } => {
                format!("never_negative {before}→{after}")
            }
            ExplainStep::ChannelLimit {
                limit,
                before,
                after,
            } => format!("channel_limit {limit} {before}→{after}"),
            ExplainStep::Preallocation {
                variant_pool,
                position,
                sold_qty,
                left_before,
                before,
                after,
                ..
            } => format!(
                "preallocation pool={variant_pool} #{position} sold={} left={left_before} {before}→{after}",
                sold_qty.map_or("-".to_string(), |q| q.to_string())
            ),
            ExplainStep::Eta {
                po_id,
                location,
                days_to_eta,
                ship_window_days,
                ..
            } => format!(
                "eta {po_id}@{location} +{days_to_eta}d ships={}..{}",
                ship_window_days.0, ship_window_days.1
            ),
        };
        actual.push_str(&line);
        actual.push('\n');
    }
    assert_text("explain", script, &actual, expect);
}

fn serde_name(rule: &stockd_core::availability::RuleName) -> String {
    format!("{rule:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let lower = c.to_ascii_lowercase();
            if c.is_uppercase() && i > 0 {
                vec!['_', lower]
            } else {
                vec![lower]
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The rule pipeline.

#[test]
fn pool_counts_channel_sellable_locations_summed_then_floored() {
    check(
        "
        channel shop *
        channel bol W1
        channel pos Q
        stock A W1 10/3
        stock A W2 2/5
        stock A Q 50
        listing shop A
        listing bol A
        listing pos A
        ",
        "
        shop A: 4 in_stock
        bol A: 7 in_stock
        pos A: 0 out_of_stock
        ",
    );
    check_explain(
        "
        channel shop *
        stock A W1 10/3
        stock A W2 2/5
        stock A Q 50
        listing shop A
        ",
        "shop",
        "A",
        "
        pool W1=10-3→7 W2=2-5→-3 = 4
        safety_stock 0 (builtin) 4→4
        percent 100 (builtin) 4→4
        max_exposed none (builtin) 4→4
        min_listed 0 (builtin) 4→4
        ",
    );
}

#[test]
fn each_rule_and_its_edges() {
    let base = "
        channel shop *
        stock A W1 17
        listing shop A
    ";
    let cases = [
        // safety stock
        ("defaults safety_stock=5", "shop A: 12 in_stock"),
        ("defaults safety_stock=17", "shop A: 0 out_of_stock"),
        ("defaults safety_stock=20", "shop A: 0 out_of_stock"),
        // percent, rounded down
        ("defaults percent=50", "shop A: 8 in_stock"),
        ("defaults percent=0", "shop A: 0 out_of_stock"),
        ("defaults percent=100", "shop A: 17 in_stock"),
        ("defaults percent=5", "shop A: 0 out_of_stock"),
        ("defaults percent=6", "shop A: 1 in_stock"),
        ("defaults safety_stock=2 percent=33", "shop A: 4 in_stock"),
        // cap
        ("defaults max_exposed=10", "shop A: 10 in_stock"),
        ("defaults max_exposed=17", "shop A: 17 in_stock"),
        ("defaults max_exposed=0", "shop A: 0 out_of_stock"),
        // min listed: below → 0, at → kept
        ("defaults min_listed=18", "shop A: 0 out_of_stock"),
        ("defaults min_listed=17", "shop A: 17 in_stock"),
        (
            "defaults max_exposed=5 min_listed=6",
            "shop A: 0 out_of_stock",
        ),
        (
            "defaults safety_stock=10 percent=50 max_exposed=3 min_listed=3",
            "shop A: 3 in_stock",
        ),
        (
            "defaults safety_stock=10 percent=50 min_listed=4",
            "shop A: 0 out_of_stock",
        ),
    ];
    for (rules, expect) in cases {
        check(&format!("{base}\n{rules}"), expect);
    }
}

#[test]
fn negative_pool_never_goes_below_zero() {
    let script = "
        channel shop *
        stock A W1 1/4
        stock A W2 2
        listing shop A
        defaults safety_stock=5 percent=50
    ";
    check(script, "shop A: 0 out_of_stock");
    check_explain(
        script,
        "shop",
        "A",
        "
        pool W1=1-4→-3 W2=2-0→2 = 0
        safety_stock 5 (default) 0→-5
        percent 50 (default) -5→-3
        max_exposed none (builtin) -3→-3
        min_listed 0 (builtin) -3→-3
        never_negative -3→0
        ",
    );
}

#[test]
fn channel_and_override_sources() {
    let script = "
        channel shop *
        channel bol *
        variant TEE-RED-M product=TEE
        stock TEE-RED-M W1 100
        listing shop TEE-RED-M
        listing bol TEE-RED-M
        defaults safety_stock=10 percent=80
        rules bol percent=50 max_exposed=30
        override sku=TEE-* channels=bol safety_stock=20
        override product=TEE min_listed=1
    ";
    check(
        script,
        "
        shop TEE-RED-M: 72 in_stock
        bol TEE-RED-M: 30 in_stock
        ",
    );
    check_explain(
        script,
        "bol",
        "TEE-RED-M",
        "
        pool W1=100-0→100 = 100
        safety_stock 20 (override[0]) 100→80
        percent 50 (channel) 80→40
        max_exposed 30 (channel) 40→30
        min_listed 1 (override[1]) 30→30
        ",
    );
}

// ---------------------------------------------------------------------------
// Override precedence, through `Rules::effective`.

/// `expect` is `safety_stock=V(source) percent=…` for the channel × sku.
#[track_caller]
fn check_effective(script: &str, channel: &str, sku_raw: &str, expect: &str) {
    let world = parse_world(script);
    let rules = world.rules();
    let e = rules.effective(&chan(channel), &world.variant(&sku(sku_raw)));
    let actual = format!(
        "safety_stock={}({}) percent={}({}) max_exposed={}({}) min_listed={}({})",
        e.safety_stock.value,
        show_source(e.safety_stock.source),
        e.percent.value,
        show_source(e.percent.source),
        e.max_exposed.value.map_or("none".into(), |v| v.to_string()),
        show_source(e.max_exposed.source),
        e.min_listed.value,
        show_source(e.min_listed.source),
    );
    assert_text(
        &format!("effective {channel} {sku_raw}"),
        script,
        &actual,
        expect,
    );
}

#[test]
fn override_precedence() {
    let script = "
        channel shop *
        channel bol *
        variant TEE-RED-M product=TEE
        variant TEE-BLUE-M product=TEE
        variant MUG-1 product=MUG
        defaults safety_stock=1 percent=90
        rules bol safety_stock=2 max_exposed=50
        override product=TEE safety_stock=3 percent=70
        override sku=TEE-* safety_stock=4
        override sku=TEE-RED-* safety_stock=5
        override sku=TEE-RED-M channels=bol safety_stock=6
        override sku=*-M safety_stock=7
        override sku=TEE-RED-* channels=shop safety_stock=8
        override product=MUG percent=60
        override product=MUG percent=65
    ";
    // Exact sku beats every glob, on the channel it names.
    check_effective(
        script,
        "bol",
        "TEE-RED-M",
        "safety_stock=6(override[3]) percent=70(override[0]) max_exposed=50(channel) min_listed=0(builtin)",
    );
    // Longest literal prefix; of two equal, the later ([5] beats [2]).
    check_effective(
        script,
        "shop",
        "TEE-RED-M",
        "safety_stock=8(override[5]) percent=70(override[0]) max_exposed=none(builtin) min_listed=0(builtin)",
    );
    // `TEE-*` (prefix 4) beats `*-M` (prefix 0) though `*-M` comes later.
    check_effective(
        script,
        "shop",
        "TEE-BLUE-M",
        "safety_stock=4(override[1]) percent=70(override[0]) max_exposed=none(builtin) min_listed=0(builtin)",
    );
    // Product match: later of equals wins; channel beats defaults.
    check_effective(
        script,
        "bol",
        "MUG-1",
        "safety_stock=2(channel) percent=65(override[7]) max_exposed=50(channel) min_listed=0(builtin)",
    );
    check_effective(
        script,
        "shop",
        "SOCK",
        "safety_stock=1(default) percent=90(default) max_exposed=none(builtin) min_listed=0(builtin)",
    );
}

// ---------------------------------------------------------------------------
// Validation.

/// `expect` has one `FIELD CODE` line per error.
#[track_caller]
fn check_invalid(script: &str, expect: &str) {
    let world = parse_world(script);
    let known: Vec<ChannelId> = world.channels.iter().map(|c| c.id.clone()).collect();
    let errors = match world.doc.validate(&known) {
        Ok(_) => panic!("rules accepted:\n{script}"),
        Err(errors) => errors,
    };
    let mut actual = String::new();
    for e in &errors {
        writeln!(actual, "{} {}", e.field, e.code()).unwrap();
        assert!(!e.to_string().is_empty());
    }
    assert_text("validation", script, &actual, expect);
}

#[test]
fn validation_names_fields() {
    check_invalid(
        "
        channel shop *
        channel bol *
        defaults safety_stock=-1 percent=101
        rules bol percent=-5 max_exposed=-1
        rules amazon percent=50
        override sku=TEE-** safety_stock=-2
        override sku=X channels=bol,gmc,bol min_listed=-3
        override product= percent=200
        budget gmc=2
        budget bol=0
        budget shop=-1
        ",
        "
        defaults.safety_stock negative_value
        defaults.percent percent_out_of_range
        channels.amazon unknown_channel
        channels.bol.max_exposed negative_value
        channels.bol.percent negative_value
        overrides[0].match.sku invalid_glob
        overrides[0].set.safety_stock negative_value
        overrides[1].channels[1] unknown_channel
        overrides[1].channels[2] duplicate_channel
        overrides[1].set.min_listed negative_value
        overrides[2].match.product_id invalid_id
        overrides[2].set.percent percent_out_of_range
        change_budget.per_day.bol out_of_range
        change_budget.per_day.gmc unknown_channel
        change_budget.per_day.shop negative_value
        ",
    );
    check_invalid(
        "
        channel shop *
        prealloc 5 order=shop velocity=7
        eta 7 5..2
        ",
        "
        preallocation conflicting_preallocation
        eta.handling_days invalid_range
        ",
    );
    check_invalid(
        "
        channel shop *
        prealloc -1 order=shop,bol
        eta -1 -1..2
        ",
        "
        preallocation.low_stock_threshold negative_value
        preallocation.order[1] unknown_channel
        eta.backorder_within_days negative_value
        eta.handling_days[0] negative_value
        ",
    );
    check_invalid(
        "
        channel shop *
        prealloc 5 velocity=0
        ",
        "preallocation.window_days out_of_range",
    );
}

#[test]
fn validation_of_structure() {
    let known = [chan("shop")];
    let doc = |edit: &dyn Fn(&mut RulesDocument)| {
        let mut doc = RulesDocument::default();
        edit(&mut doc);
        doc.validate(&known)
            .unwrap_err()
            .iter()
            .map(|e| format!("{} {}", e.field, e.code()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        doc(&|d| d.overrides.push(OverrideDoc {
            matcher: MatchDoc {
                sku: Some("A".into()),
                product_id: Some("P".into()),
            },
            ..OverrideDoc::default()
        })),
        ["overrides[0].match invalid_match"]
    );
    assert_eq!(
        doc(&|d| d.overrides.push(OverrideDoc::default())),
        ["overrides[0].match invalid_match"]
    );
    assert_eq!(
        doc(&|d| d.preallocation = Some(PreallocationDoc::default())),
        [
            "preallocation.low_stock_threshold missing",
            "preallocation.order missing"
        ]
    );
    assert_eq!(
        doc(&|d| d.preallocation = Some(PreallocationDoc {
            low_stock_threshold: Some(3),
            by: Some("speed".into()),
            ..PreallocationDoc::default()
        })),
        ["preallocation.by invalid_value"]
    );
    assert_eq!(
        doc(&|d| d.preallocation = Some(PreallocationDoc {
            low_stock_threshold: Some(3),
            by: Some("velocity".into()),
            ..PreallocationDoc::default()
        })),
        ["preallocation.window_days missing"]
    );
    assert_eq!(
        doc(&|d| d
            .channels
            .insert(String::new(), RuleValues::default())
            .map_or((), drop)),
        ["channels. invalid_id"]
    );
    // An empty document is valid: built-in values everywhere.
    assert!(RulesDocument::default().validate(&[]).is_ok());
}

#[test]
fn unknown_keys_are_refused_by_name() {
    use serde::de::value::{Error, MapDeserializer};
    use serde::Deserialize;
    let entries = vec![("percnt", 50i64)];
    let result = RuleValues::deserialize(MapDeserializer::<_, Error>::new(entries.into_iter()));
    let message = result.unwrap_err().to_string();
    assert!(message.contains("unknown field `percnt`"), "{message}");
}

#[test]
fn validation_errors_serialize_with_code() {
    let doc = RulesDocument {
        defaults: RuleValues {
            percent: Some(150),
            ..RuleValues::default()
        },
        ..RulesDocument::default()
    };
    let errors = doc.validate(&[]).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "defaults.percent: must be between 0 and 100 (got 150)"
    );
    assert_eq!(errors[0].code(), "percent_out_of_range");
}

// ---------------------------------------------------------------------------
// Pre-allocation.

#[test]
fn preallocation_by_explicit_order() {
    let world = "
        channel shop *
        channel bol *
        channel amazon *
        listing shop A
        listing bol A
        listing amazon A
        prealloc 5 order=bol,shop
    ";
    // At the threshold: partition in order bol, shop, then amazon (unnamed).
    check(
        &format!("{world}\nstock A W1 5"),
        "
        shop A: 0 out_of_stock
        bol A: 5 in_stock
        amazon A: 0 out_of_stock
        ",
    );
    // With caps, what bol leaves goes to shop, then amazon.
    check(
        &format!("{world}\nstock A W1 5\nrules bol max_exposed=2\nrules shop max_exposed=2"),
        "
        shop A: 2 in_stock
        bol A: 2 in_stock
        amazon A: 1 in_stock
        ",
    );
    // Above the threshold every channel sees its own result.
    check(
        &format!("{world}\nstock A W1 6"),
        "
        shop A: 6 in_stock
        bol A: 6 in_stock
        amazon A: 6 in_stock
        ",
    );
    check_explain(
        &format!("{world}\nstock A W1 3\nrules bol max_exposed=1"),
        "shop",
        "A",
        "
        pool W1=3-0→3 = 3
        safety_stock 0 (builtin) 3→3
        percent 100 (builtin) 3→3
        max_exposed none (builtin) 3→3
        min_listed 0 (builtin) 3→3
        preallocation pool=3 #2 sold=- left=2 3→2
        ",
    );
}

#[test]
fn preallocation_uses_the_variant_pool_and_listing_rank() {
    // bol sells only W1; the variant pool spans W1 and W2.
    check(
        "
        channel shop *
        channel bol W1
        stock A W1 2
        stock A W2 2
        listing shop A
        listing bol A rank=1
        prealloc 4 order=shop,bol
        ",
        "
        shop A: 2 in_stock
        bol A: 2 in_stock
        ",
    );
    // A zero pool at threshold 0 partitions nothing.
    check(
        "
        channel shop *
        listing shop A
        prealloc 0 order=shop
        ",
        "shop A: 0 out_of_stock",
    );
}

#[test]
fn preallocation_by_velocity() {
    let world = "
        channel shop *
        channel bol *
        channel amazon *
        stock A W1 4
        listing shop A
        listing bol A
        listing amazon A
        rules shop max_exposed=3
        prealloc 10 velocity=7
        sale bol A 2 -1
        sale shop A 5 -100
        sale shop A 9 -200
        sale amazon A 50 -169
        sale amazon A 1 1
        sale amazon B 99 -1
    ";
    // In the window: shop 5, bol 2, amazon 0 (too old, in the future, other sku).
    check(
        world,
        "
        shop A: 3 in_stock
        bol A: 1 in_stock
        amazon A: 0 out_of_stock
        ",
    );
    check_explain(
        world,
        "bol",
        "A",
        "
        pool W1=4-0→4 = 4
        safety_stock 0 (builtin) 4→4
        percent 100 (builtin) 4→4
        max_exposed none (builtin) 4→4
        min_listed 0 (builtin) 4→4
        preallocation pool=4 #2 sold=2 left=1 4→1
        ",
    );
    // Ties broken by channel id: amazon < bol < shop.
    check(
        "
        channel shop *
        channel bol *
        channel amazon *
        stock A W1 1
        listing shop A
        listing bol A
        listing amazon A
        prealloc 10 velocity=7
        ",
        "
        shop A: 0 out_of_stock
        bol A: 0 out_of_stock
        amazon A: 1 in_stock
        ",
    );
}

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
}

#[test]
fn preallocation_never_exceeds_the_pool_property() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let channel_names = ["a", "b", "c", "d"];
    for round in 0..500 {
        let mut script = String::from("locations W1 W2 W3 Q-\n");
        let n_channels = 1 + rng.below(4) as usize;
        for name in &channel_names[..n_channels] {
            let locations = ["*", "W1", "W2", "W1,W3", "Q", "W2,Q"][rng.below(6) as usize];
            writeln!(script, "channel {name} {locations}").unwrap();
            writeln!(script, "listing {name} A").unwrap();
            let mut rules = String::new();
            for (key, bound) in [
                ("safety_stock", 5),
                ("percent", 101),
                ("max_exposed", 12),
                ("min_listed", 4),
            ] {
                if rng.below(2) == 0 {
                    write!(rules, " {key}={}", rng.below(bound)).unwrap();
                }
            }
            if !rules.is_empty() {
                writeln!(script, "rules {name}{rules}").unwrap();
            }
        }
        for location in ["W1", "W2", "W3", "Q"] {
            let on_hand = rng.below(8);
            let reserved = rng.below(8);
            writeln!(script, "stock A {location} {on_hand}/{reserved}").unwrap();
        }
        let threshold = rng.below(20);
        writeln!(script, "prealloc {threshold} velocity=3").unwrap();
        for name in &channel_names[..n_channels] {
            writeln!(script, "sale {name} A {} -{}", rng.below(5), rng.below(100)).unwrap();
        }

        let world = parse_world(&script);
        let pool: i64 = world.stock[&sku("A")]
            .iter()
            .filter(|(l, _)| l.as_str() != "Q")
            .map(|(_, q)| q.on_hand - q.reserved)
            .sum::<i64>()
            .max(0);
        let shared = {
            let mut w = parse_world(&script);
            w.doc.preallocation = None;
            w.compute()
        };
        let partitioned = world.compute();
        let sum: i64 = partitioned.iter().map(|r| r.state.quantity).sum();
        for (own, got) in shared.iter().zip(&partitioned) {
            assert!(got.state.quantity >= 0, "round {round}\n{script}");
            assert!(
                got.state.quantity <= own.state.quantity,
                "round {round}: exposure above its own rule result\n{script}"
            );
            if pool > threshold {
                assert_eq!(got.state, own.state, "round {round}\n{script}");
            }
        }
        if pool <= threshold {
            assert!(
                sum <= pool,
                "round {round}: Σ {sum} > pool {pool}\n{script}"
            );
        }
    }
}

#[test]
fn partition_serves_in_order() {
    assert_eq!(partition(5, &[2, 4, 1]), [2, 3, 0]);
    assert_eq!(partition(0, &[2, 4]), [0, 0]);
    assert_eq!(partition(-3, &[2]), [0]);
    assert_eq!(partition(9, &[2, -1, 4]), [2, 0, 4]);
    // A share below its minimum is 0 and leaves its units to the next.
    assert_eq!(
        stockd_core::availability::partition_with_minimum(5, &[3, 4, 2], &[0, 3, 0]),
        [3, 0, 2]
    );
}

// ---------------------------------------------------------------------------
// Bundles.

#[test]
fn kit_pools() {
    let world = "
        channel shop *
        channel bol W1
        stock CUP W1 7
        stock CUP W2 4
        stock SAUCER W1 2
        stock SAUCER W2 9
        stock SPOON W1 5
        kit SET CUPx2 SAUCERx1
        kit DUO CUPx1 SPOONx1
        listing shop SET
        listing bol SET
        listing shop DUO
    ";
    // shop: CUP 11 → 5 sets, SAUCER 11 → 11: 5. bol (W1): CUP 7 → 3, SAUCER 2 → 2: 2.
    // DUO shares CUP: CUP 11 → 11, SPOON 5 → 5 (each kit sees the shared pool).
    check(
        world,
        "
        shop DUO: 5 in_stock
        shop SET: 5 in_stock
        bol SET: 2 in_stock
        ",
    );
    check_explain(
        &format!("{world}\nstock SET W1 1/0\nstock SET Q 3"),
        "bol",
        "SET",
        "
        kit prebuilt=1 CUP:7/2→3 SAUCER:2/1→2 = 3
        safety_stock 0 (builtin) 3→3
        percent 100 (builtin) 3→3
        max_exposed none (builtin) 3→3
        min_listed 0 (builtin) 3→3
        ",
    );
    // Nested kit: a GIFT holds a SET (pre-built 1 + made 5 = 6) and a SPOON.
    check(
        "
        channel shop *
        stock CUP W1 10
        stock SAUCER W1 10
        stock SPOON W1 4
        stock SET W1 1
        kit SET CUPx2 SAUCERx1
        kit GIFT SETx3 SPOONx1
        listing shop GIFT
        defaults percent=50
        ",
        "shop GIFT: 1 in_stock",
    );
    // Oversold component: its pool is 0, so is the kit.
    check(
        "
        channel shop *
        stock CUP W1 1/3
        stock SAUCER W1 9
        kit SET CUPx1 SAUCERx1
        listing shop SET
        ",
        "shop SET: 0 out_of_stock",
    );
}

fn bundle(kit: &str, components: &[(&str, u32)]) -> Bundle {
    Bundle {
        kit: sku(kit),
        components: components
            .iter()
            .map(|(s, q)| BundleComponent {
                sku: sku(s),
                qty: *q,
            })
            .collect(),
    }
}

/// `defs` is one `KIT COMPONENTxQTY...` per line; `expect` the errors, one a line.
#[track_caller]
fn check_bundles(defs: &str, expect: &str) {
    let bundles: Vec<Bundle> = defs
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let components: Vec<(&str, u32)> = words[1..]
                .iter()
                .map(|c| {
                    let (s, q) = c.rsplit_once('x').unwrap();
                    (s, q.parse().unwrap())
                })
                .collect();
            bundle(words[0], &components)
        })
        .collect();
    let actual = match validate_bundles(&bundles) {
        Ok(_) => "ok".to_string(),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}: {e}", e.code()))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert_text("bundles", defs, &actual, expect);
}

#[test]
fn bundle_validation() {
    check_bundles("SET CUPx2 SAUCERx1\nGIFT SETx1 CUPx1", "ok");
    check_bundles("SET SETx1", "self_reference: kit SET contains itself");
    check_bundles(
        "A Bx1\nB Cx1\nC Ax2",
        "bundle_cycle: bundle cycle: A → B → C → A",
    );
    check_bundles(
        "A Bx1\nB Ax1\nX Yx1\nY Xx1 Zx1",
        "
        bundle_cycle: bundle cycle: A → B → A
        bundle_cycle: bundle cycle: X → Y → X
        ",
    );
    check_bundles(
        "A Bx0 Bx1\nA Cx1",
        "
        zero_qty: kit A: component B has qty 0
        duplicate_component: kit A lists component B twice
        duplicate_kit: kit A is defined twice
        ",
    );
    check_bundles("A", "no_components: kit A has no components");
}

#[test]
fn affected_skus_both_directions() {
    let graph = validate_bundles(&[
        bundle("SET", &[("CUP", 2), ("SAUCER", 1)]),
        bundle("GIFT", &[("SET", 1), ("SPOON", 1)]),
        bundle("DUO", &[("CUP", 1), ("SPOON", 1)]),
    ])
    .unwrap();
    let show = |set: std::collections::BTreeSet<Sku>| {
        set.iter().map(Sku::as_str).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(show(graph.kits_containing(&sku("CUP"))), "DUO GIFT SET");
    assert_eq!(show(graph.kits_containing(&sku("GIFT"))), "");
    assert_eq!(
        show(graph.components_of(&sku("GIFT"))),
        "CUP SAUCER SET SPOON"
    );
    assert_eq!(
        show(graph.affected_skus(&sku("SET"))),
        "CUP GIFT SAUCER SET"
    );
    assert_eq!(show(graph.affected_skus(&sku("SPOON"))), "DUO GIFT SPOON");
    assert_eq!(show(graph.affected_skus(&sku("OTHER"))), "OTHER");
    assert!(graph.is_kit(&sku("SET")) && !graph.is_kit(&sku("CUP")));
    assert_eq!(graph.components(&sku("SET")).len(), 2);
}

// ---------------------------------------------------------------------------
// ETA.

#[test]
fn eta_backorder_window() {
    let base = "
        channel shop * backorder
        listing shop A
        eta 14 2..4
    ";
    let cases = [
        // Confirmed, within: backorder with the ship window.
        ("inbound P1 A W1 10 +3 confirmed", "shop A: 0 backorder eta=+3d ships=5..7"),
        // Boundaries: today and exactly `within` days; one more is too far.
        ("inbound P1 A W1 10 +0 confirmed", "shop A: 0 backorder eta=+0d ships=2..4"),
        ("inbound P1 A W1 10 +14 confirmed", "shop A: 0 backorder eta=+14d ships=16..18"),
        ("inbound P1 A W1 10 +15 confirmed", "shop A: 0 out_of_stock"),
        // Overdue ETAs are not trusted.
        ("inbound P1 A W1 10 -1 confirmed", "shop A: 0 out_of_stock"),
        // Unconfirmed never shows; the earliest confirmed wins.
        ("inbound P1 A W1 10 +2 unconfirmed", "shop A: 0 out_of_stock"),
        (
            "inbound P1 A W1 10 +2 unconfirmed\ninbound P2 A W2 1 +9 confirmed\ninbound P3 A W1 1 +5 confirmed",
            "shop A: 0 backorder eta=+5d ships=7..9",
        ),
        // Not at a sellable location, or nothing to come.
        ("inbound P1 A Q 10 +3 confirmed", "shop A: 0 out_of_stock"),
        ("inbound P1 A W1 0 +3 confirmed", "shop A: 0 out_of_stock"),
        // Stock on hand: in stock, no ETA.
        ("inbound P1 A W1 10 +3 confirmed\nstock A W1 2", "shop A: 2 in_stock"),
        // Stock held back by safety stock: quantity stays 0, backorder shows.
        (
            "inbound P1 A W1 10 +3 confirmed\nstock A W1 2\ndefaults safety_stock=2",
            "shop A: 0 backorder eta=+3d ships=5..7",
        ),
    ];
    for (extra, expect) in cases {
        check(&format!("{base}\n{extra}"), expect);
    }
    // A channel without backorder support, one whose locations miss the
    // delivery, and rules without `eta`.
    check(
        "
        channel shop *
        channel bol W2 backorder
        listing shop A
        listing bol A
        inbound P1 A W1 10 +3 confirmed
        eta 14 2..4
        ",
        "
        shop A: 0 out_of_stock
        bol A: 0 out_of_stock
        ",
    );
    check(
        "
        channel shop * backorder
        listing shop A
        inbound P1 A W1 10 +3 confirmed
        ",
        "shop A: 0 out_of_stock",
    );
    check_explain(
        &format!("{base}\ninbound P1 A W1 10 +3 confirmed"),
        "shop",
        "A",
        "
        pool  = 0
        safety_stock 0 (builtin) 0→0
        percent 100 (builtin) 0→0
        max_exposed none (builtin) 0→0
        min_listed 0 (builtin) 0→0
        eta P1@W1 +3d ships=5..7
        ",
    );
}

// ---------------------------------------------------------------------------
// Change budget.

fn state(raw: &str) -> ListingState {
    let (quantity, availability) = raw.split_once(' ').unwrap();
    ListingState {
        quantity: quantity.parse().unwrap(),
        availability: match availability {
            "in_stock" => Availability::InStock,
            "out_of_stock" => Availability::OutOfStock,
            "backorder" => Availability::Backorder,
            other => panic!("bad availability {other}"),
        },
        eta: None,
        ship_window_days: None,
    }
}

/// `pushes` are minutes before now; `last` and `desired` are `QTY AVAILABILITY`
/// (`last` may be `-`); `expect` is `unchanged`, `push REASON` or `hold +MINUTES`.
#[track_caller]
fn check_budget(pushes: &[i64], last: &str, desired: &str, per_day: Option<u32>, expect: &str) {
    let pushes: Vec<DateTime<Utc>> = pushes
        .iter()
        .map(|m| now() - Duration::minutes(*m))
        .collect();
    let last = (last != "-").then(|| state(last));
    let decision = decide_push(&pushes, now(), &state(desired), last.as_ref(), per_day);
    let actual = match decision {
        PushDecision::Unchanged => "unchanged".to_string(),
        PushDecision::Push { reason } => format!("push {}", format!("{reason:?}").to_lowercase()),
        PushDecision::Hold { until } => format!("hold +{}", (until - now()).num_minutes()),
    };
    assert_text(
        "budget",
        &format!("{pushes:?} {last:?} → {desired} per_day={per_day:?}"),
        &actual,
        expect,
    );
}

#[test]
fn change_budget() {
    let day = 24 * 60;
    check_budget(&[], "-", "5 in_stock", Some(2), "push first");
    check_budget(&[10], "5 in_stock", "5 in_stock", Some(2), "unchanged");
    check_budget(&[10, 20], "5 in_stock", "6 in_stock", None, "push nobudget");
    check_budget(
        &[10],
        "5 in_stock",
        "6 in_stock",
        Some(2),
        "push withinbudget",
    );
    // Two pushes in the last day: hold until the older one leaves the window.
    check_budget(
        &[10, 300],
        "5 in_stock",
        "6 in_stock",
        Some(2),
        &format!("hold +{}", day - 300),
    );
    check_budget(
        &[300, 10, 5],
        "5 in_stock",
        "6 in_stock",
        Some(2),
        &format!("hold +{}", day - 10),
    );
    // A push exactly 24 h ago no longer counts; one a minute younger does.
    check_budget(
        &[10, day],
        "5 in_stock",
        "6 in_stock",
        Some(2),
        "push withinbudget",
    );
    check_budget(
        &[10, day - 1],
        "5 in_stock",
        "6 in_stock",
        Some(2),
        "hold +1",
    );
    // A decrease, or going out of stock, is never held.
    check_budget(
        &[1, 2, 3],
        "5 in_stock",
        "4 in_stock",
        Some(1),
        "push decrease",
    );
    check_budget(
        &[1, 2, 3],
        "5 in_stock",
        "0 out_of_stock",
        Some(1),
        "push decrease",
    );
    check_budget(
        &[1, 2, 3],
        "0 backorder",
        "0 out_of_stock",
        Some(1),
        "push decrease",
    );
    // Back in stock, or into backorder, is an increase: budgeted.
    check_budget(
        &[1],
        "0 out_of_stock",
        "0 backorder",
        Some(1),
        &format!("hold +{}", day - 1),
    );
    check_budget(
        &[1],
        "0 out_of_stock",
        "3 in_stock",
        Some(1),
        &format!("hold +{}", day - 1),
    );
}

#[test]
fn budget_never_holds_a_decrease_property() {
    let mut rng = XorShift(42);
    let kinds = ["in_stock", "out_of_stock", "backorder"];
    for _ in 0..2_000 {
        let pushes: Vec<DateTime<Utc>> = (0..rng.below(6))
            .map(|_| now() - Duration::minutes(rng.below(3_000)))
            .collect();
        let last = state(&format!(
            "{} {}",
            rng.below(10),
            kinds[rng.below(3) as usize]
        ));
        let desired = state(&format!(
            "{} {}",
            rng.below(10),
            kinds[rng.below(3) as usize]
        ));
        let per_day = (rng.below(2) == 0).then(|| 1 + rng.below(3) as u32);
        let decision = decide_push(&pushes, now(), &desired, Some(&last), per_day);
        let lowers = desired.quantity < last.quantity
            || (desired.availability == Availability::OutOfStock
                && last.availability != Availability::OutOfStock);
        if lowers {
            assert!(
                matches!(decision, PushDecision::Push { .. }),
                "{decision:?}"
            );
        }
        if let PushDecision::Hold { until } = decision {
            assert!(until > now());
        }
    }
}

// ---------------------------------------------------------------------------
// Serialization of results for the API.

#[test]
fn backorder_result_carries_its_eta_step() {
    let world = parse_world(
        "
        channel shop * backorder
        listing shop A
        inbound P1 A W1 10 +3 confirmed
        eta 14 2..4
        ",
    );
    let result = world.compute().remove(0);
    assert_eq!(result.state.availability, Availability::Backorder);
    assert!(matches!(
        result.explain.last(),
        Some(ExplainStep::Eta { days_to_eta: 3, .. })
    ));
}

#[test]
fn kit_pool_properties() {
    let mut rng = XorShift(7);
    for round in 0..300 {
        let (cup_qty, saucer_qty) = (1 + rng.below(3), 1 + rng.below(3));
        let stock = |rng: &mut XorShift| {
            let (on_hand, reserved) = (rng.below(12), rng.below(4));
            (on_hand, reserved, (on_hand - reserved).max(0))
        };
        let (cup_on_hand, cup_reserved, cup_pool) = stock(&mut rng);
        let (saucer_on_hand, saucer_reserved, saucer_pool) = stock(&mut rng);
        let prebuilt = rng.below(3);
        let extra = rng.below(5);
        let script = |cup_extra: i64| {
            format!(
                "channel shop *\nlisting shop SET\nkit SET CUPx{cup_qty} SAUCERx{saucer_qty}\n\
                 stock CUP W1 {}/{cup_reserved}\nstock SAUCER W1 {saucer_on_hand}/{saucer_reserved}\n\
                 stock SET W2 {prebuilt}",
                cup_on_hand + cup_extra
            )
        };
        let kits = parse_world(&script(0)).compute()[0].state.quantity;
        assert_eq!(
            kits,
            prebuilt + (cup_pool / cup_qty).min(saucer_pool / saucer_qty),
            "round {round}\n{}",
            script(0)
        );
        assert!(
            kits - prebuilt <= cup_pool / cup_qty && kits - prebuilt <= saucer_pool / saucer_qty
        );
        // More component stock never lowers the kit.
        let more = parse_world(&script(extra)).compute()[0].state.quantity;
        assert!(more >= kits, "round {round}\n{}", script(extra));
    }
}

#[test]
fn unknown_channel_listing_sees_no_stock() {
    let rules = RulesDocument::default().validate(&[]).unwrap();
    let locations = parse_locations(&["W1"]);
    let ctx = Context::new(&rules, &[], &locations, today(), now());
    let variant = World::default().variant(&sku("A"));
    let stock = [(loc("W1"), qty(5, 0))];
    let listings = [Listing {
        channel: chan("ghost"),
        sku: sku("A"),
        rank: None,
    }];
    let out = compute_variant(
        &ctx,
        &VariantInput {
            variant: &variant,
            stock: &stock,
            components: &[],
            inbound: &[],
            listings: &listings,
            sales: &[],
        },
    );
    assert_eq!(out[0].state.quantity, 0);
}

#[test]
fn a_channel_api_limit_caps_the_quantity_and_says_so() {
    check_explain(
        "
        channel bol * max=999
        stock A W1 1500
        listing bol A
        ",
        "bol",
        "A",
        "
        pool W1=1500-0→1500 = 1500
        safety_stock 0 (builtin) 1500→1500
        percent 100 (builtin) 1500→1500
        max_exposed none (builtin) 1500→1500
        min_listed 0 (builtin) 1500→1500
        channel_limit 999 1500→999
        ",
    );
    // Below the limit nothing is added to the explanation.
    check_explain(
        "
        channel bol * max=999
        stock A W1 12
        listing bol A
        ",
        "bol",
        "A",
        "
        pool W1=12-0→12 = 12
        safety_stock 0 (builtin) 12→12
        percent 100 (builtin) 12→12
        max_exposed none (builtin) 12→12
        min_listed 0 (builtin) 12→12
        ",
    );
}
