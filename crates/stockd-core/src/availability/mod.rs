//! Channel availability: what each channel may show of a variant, as a pure
//! function of stock, rules and sales history.
//!
//! Per channel × variant, in this order:
//! 1. **pool**: max(0, Σ (on_hand − reserved)) over the channel's sellable
//!    locations (summed before flooring, see [`location_pool`]) — or, for a
//!    kit, pre-built kit stock + min over components of ⌊component pool /
//!    qty⌋ over the same locations;
//! 2. − `safety_stock`; × `percent` / 100 rounded down; min `max_exposed`;
//!    0 if below `min_listed`; never below 0 (values from `Rules::effective`);
//! 3. **pre-allocation**: when the variant's pool over every sellable location
//!    is at or below `low_stock_threshold`, listings are served in rank order
//!    and each gets min(its rule result, what is left), so the exposures never
//!    sum to more than the pool. Rank: the listing's own `rank` (lower first,
//!    ranked before unranked), then the rules' `order` (channels not named
//!    after those named) or sales over the trailing window (most first), then
//!    channel id;
//! 4. **ETA**: at 0, a channel that supports backorder shows `backorder` with
//!    the earliest confirmed inbound ETA at its locations that is between
//!    today and today + `backorder_within_days` (inclusive), and a ship window
//!    of days to the ETA + `handling_days`. Unconfirmed or overdue inbound
//!    never shows; a kit looks only at inbound of the kit sku itself.
//!
//! `Context::new` does the per-rules work once (which locations count for
//! each channel); `compute_variant` then costs one pass over the variant's
//! rows per listing, so a store can recompute only the affected variants.

pub mod budget;
pub mod bundle;

use crate::catalog::{Location, Variant};
use crate::ids::{ChannelId, LocationId, PoId, Sku};
use crate::rules::{EffectiveRule, PreallocationOrder, RuleSource, Rules};
use crate::stock::{InboundLine, Quantities};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use budget::{decide_push, lowers_exposure, PushDecision, PushReason};
pub use bundle::{validate_bundles, Bundle, BundleComponent, BundleError, BundleGraph};

// ---------------------------------------------------------------------------
// Inputs.

/// A channel as availability needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    /// Locations whose stock the channel sells; `None` = every sellable one.
    /// Non-sellable locations never count, even when named.
    pub locations: Option<Vec<LocationId>>,
    /// Whether the channel can show backorder with a date.
    pub supports_backorder: bool,
    /// The most the channel's API accepts (bol.com: 999), if it has a limit.
    pub max_quantity: Option<i64>,
}

/// A variant sold on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub channel: ChannelId,
    pub sku: Sku,
    /// Pre-allocation priority of this listing (lower first); beats the rules' order.
    pub rank: Option<i32>,
}

/// Units of a variant sold on a channel (from order events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    pub channel: ChannelId,
    pub sku: Sku,
    pub qty: i64,
    pub at: DateTime<Utc>,
}

/// The stock of one kit component; `components` is non-empty when the
/// component is itself a kit (bundle definitions are acyclic, so this is finite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStock {
    pub sku: Sku,
    pub qty_per_kit: u32,
    pub stock: Vec<(LocationId, Quantities)>,
    pub components: Vec<ComponentStock>,
}

/// Everything about one variant the computation reads.
#[derive(Debug, Clone, Copy)]
pub struct VariantInput<'a> {
    pub variant: &'a Variant,
    /// The variant's rows (a kit's: its pre-built stock).
    pub stock: &'a [(LocationId, Quantities)],
    /// Empty unless the variant is a kit.
    pub components: &'a [ComponentStock],
    pub inbound: &'a [InboundLine],
    /// Every listing of the variant (pre-allocation partitions among them).
    pub listings: &'a [Listing],
    /// Sales of the variant; only needed when pre-allocating by velocity.
    pub sales: &'a [Sale],
}

/// The per-rules part of the computation, built once and shared by every
/// variant computed under the same rules, channels, locations and time.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    rules: &'a Rules,
    channels: BTreeMap<&'a ChannelId, (&'a Channel, Vec<LocationId>)>,
    sellable: Vec<LocationId>,
    today: NaiveDate,
    now: DateTime<Utc>,
    /// Record each listing's explain trail (off where only the states are
    /// wanted: the writer's refresh, whole-catalog passes).
    explain: bool,
}

impl<'a> Context<'a> {
    /// `today` is the merchant's calendar date (for ETAs), `now` the instant
    /// (for the velocity window).
    pub fn new(
        rules: &'a Rules,
        channels: &'a [Channel],
        locations: &[Location],
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Self {
        let mut sellable: Vec<LocationId> = locations
            .iter()
            .filter(|l| l.sellable)
            .map(|l| l.id.clone())
            .collect();
        sellable.sort();
        sellable.dedup();
        let channels = channels
            .iter()
            .map(|channel| {
                let counted = match &channel.locations {
                    None => sellable.clone(),
                    Some(named) => {
                        let mut counted: Vec<LocationId> = named
                            .iter()
                            .filter(|id| sellable.binary_search(id).is_ok())
                            .cloned()
                            .collect();
                        counted.sort();
                        counted.dedup();
                        counted
                    }
                };
                (&channel.id, (channel, counted))
            })
            .collect();
        Self {
            rules,
            channels,
            sellable,
            today,
            now,
            explain: true,
        }
    }

    /// The same computation without explain trails: every state is the
    /// same, `explain` is empty. Building the trails (location lists, kit
    /// trees, rule steps) is most of a listing's cost where only the state
    /// is read.
    pub fn states_only(mut self) -> Self {
        self.explain = false;
        self
    }

    /// Locations whose stock counts for a channel (an unknown channel has none).
    /// The channel's API limit on a quantity, if any.
    pub fn max_quantity(&self, channel: &ChannelId) -> Option<i64> {
        self.channels.get(channel).and_then(|(c, _)| c.max_quantity)
    }

    pub fn channel_locations(&self, channel: &ChannelId) -> &[LocationId] {
        self.channels
            .get(channel)
            .map(|(_, counted)| counted.as_slice())
            .unwrap_or(&[])
    }
}

// ---------------------------------------------------------------------------
// Outputs.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    InStock,
    OutOfStock,
    Backorder,
}

/// What a channel should show for a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingState {
    pub quantity: i64,
    pub availability: Availability,
    pub eta: Option<NaiveDate>,
    /// Days from today to shipping, `(min, max)`.
    pub ship_window_days: Option<(u32, u32)>,
}

/// The computed state of one listing and the steps that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingAvailability {
    pub channel: ChannelId,
    pub sku: Sku,
    #[serde(flatten)]
    pub state: ListingState,
    pub explain: Vec<ExplainStep>,
}

/// One location's contribution to a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationPool {
    pub location: LocationId,
    pub on_hand: i64,
    pub reserved: i64,
    /// on_hand − reserved; negative where the location is oversold.
    pub net_qty: i64,
}

/// One component's contribution to a kit's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentPool {
    pub sku: Sku,
    pub qty_per_kit: u32,
    pub pool: i64,
    /// ⌊pool / qty_per_kit⌋.
    pub kits: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    SafetyStock,
    Percent,
    MaxExposed,
    MinListed,
}

/// One step of a listing's computation, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ExplainStep {
    /// The pool over the channel's sellable locations.
    Pool {
        locations: Vec<LocationPool>,
        pool: i64,
    },
    /// A kit's pool: pre-built stock plus what the components make.
    Kit {
        prebuilt: Vec<LocationPool>,
        prebuilt_qty: i64,
        components: Vec<ComponentPool>,
        pool: i64,
    },
    /// One rule value applied. `value` is `None` for an absent cap.
    Rule {
        rule: RuleName,
        value: Option<i64>,
        source: RuleSource,
        before: i64,
        after: i64,
    },
    /// A negative result raised to 0.
    NeverNegative { before: i64, after: i64 },
    /// Low stock: this listing's share of the partitioned pool.
    Preallocation {
        variant_pool: i64,
        low_stock_threshold: i64,
        /// 1-based place in the serving order.
        position: usize,
        listing_rank: Option<i32>,
        /// Units sold on the channel in the window (velocity order only).
        sold_qty: Option<i64>,
        left_before: i64,
        before: i64,
        after: i64,
    },
    /// The channel's API accepts no more than `limit`.
    ChannelLimit { limit: i64, before: i64, after: i64 },
    /// Nothing sellable, but a confirmed delivery is near.
    Eta {
        po_id: PoId,
        location: LocationId,
        eta: NaiveDate,
        days_to_eta: u32,
        ship_window_days: (u32, u32),
    },
}

// ---------------------------------------------------------------------------
// The computation.

/// An i128 total as an i64, clamped at the ends.
fn clamp_i64(total: i128) -> i64 {
    i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
}

/// max(0, Σ (on_hand − reserved)) over `counted` (sorted) locations.
pub fn location_pool(
    rows: &[(LocationId, Quantities)],
    counted: &[LocationId],
) -> (i64, Vec<LocationPool>) {
    (pool_total(rows, counted), location_parts(rows, counted))
}

/// The pool of `location_pool` without its parts.
fn pool_total(rows: &[(LocationId, Quantities)], counted: &[LocationId]) -> i64 {
    // Summed before flooring: units oversold at one location are owed out of
    // another's stock, so they must not be offered again.
    // Summed in i128: with every counter within ±STOCK_MAX the total fits an
    // i64 for any realistic number of locations; beyond that it is clamped,
    // never wrapped.
    let pool = rows
        .iter()
        .filter(|(id, _)| counted.binary_search(id).is_ok())
        .map(|(_, q)| i128::from(q.on_hand.saturating_sub(q.reserved)))
        .sum::<i128>();
    clamp_i64(pool).max(0)
}

fn location_parts(rows: &[(LocationId, Quantities)], counted: &[LocationId]) -> Vec<LocationPool> {
    let mut parts: Vec<LocationPool> = rows
        .iter()
        .filter(|(id, _)| counted.binary_search(id).is_ok())
        .map(|(id, q)| LocationPool {
            location: id.clone(),
            on_hand: q.on_hand,
            reserved: q.reserved,
            net_qty: q.on_hand.saturating_sub(q.reserved),
        })
        .collect();
    parts.sort_by(|a, b| a.location.cmp(&b.location));
    parts
}

/// A kit's pool over `counted` locations: pre-built stock plus the kits the
/// components make, ⌊component pool / qty⌋ at the scarcest component.
pub fn kit_pool(
    prebuilt: &[(LocationId, Quantities)],
    components: &[ComponentStock],
    counted: &[LocationId],
) -> i64 {
    kit_total(
        pool_total(prebuilt, counted),
        components.iter().map(|c| component_kits(c, counted).1),
    )
}

/// A component's pool over `counted` and the kits it makes.
fn component_kits(c: &ComponentStock, counted: &[LocationId]) -> (i64, i64) {
    let pool = if c.components.is_empty() {
        pool_total(&c.stock, counted)
    } else {
        kit_pool(&c.stock, &c.components, counted)
    };
    (pool, pool.div_euclid(i64::from(c.qty_per_kit.max(1))))
}

/// Pre-built kits plus the kits the scarcest component makes.
fn kit_total(prebuilt_qty: i64, kits: impl Iterator<Item = i64>) -> i64 {
    let built = kits.min().unwrap_or(0).max(0);
    clamp_i64(i128::from(prebuilt_qty) + i128::from(built))
}

fn kit_step(
    prebuilt: &[(LocationId, Quantities)],
    components: &[ComponentStock],
    counted: &[LocationId],
) -> (i64, ExplainStep) {
    let (prebuilt_qty, prebuilt_parts) = location_pool(prebuilt, counted);
    let parts: Vec<ComponentPool> = components
        .iter()
        .map(|c| {
            let (pool, kits) = component_kits(c, counted);
            ComponentPool {
                sku: c.sku.clone(),
                qty_per_kit: c.qty_per_kit,
                pool,
                kits,
            }
        })
        .collect();
    let pool = kit_total(prebuilt_qty, parts.iter().map(|p| p.kits));
    let step = ExplainStep::Kit {
        prebuilt: prebuilt_parts,
        prebuilt_qty,
        components: parts,
        pool,
    };
    (pool, step)
}

/// Applies safety stock, percent, cap, min listed and the floor at 0 to a
/// pool, recording each step.
pub fn apply_rule(pool: i64, rule: &EffectiveRule, explain: &mut Vec<ExplainStep>) -> i64 {
    rule_steps(pool, rule, Some(explain))
}

/// `apply_rule`, recording the steps only when given a trail.
fn rule_steps(pool: i64, rule: &EffectiveRule, mut explain: Option<&mut Vec<ExplainStep>>) -> i64 {
    let mut step = |rule_name: RuleName, value: Option<i64>, source, before, after| {
        if let Some(explain) = explain.as_deref_mut() {
            explain.push(ExplainStep::Rule {
                rule: rule_name,
                value,
                source,
                before,
                after,
            });
        }
        after
    };
    let s = &rule.safety_stock;
    let after_safety = step(
        RuleName::SafetyStock,
        Some(s.value),
        s.source,
        pool,
        pool.saturating_sub(s.value),
    );
    let p = &rule.percent;
    // Rounded down (towards −∞, so a negative value stays ≤ 0).
    let scaled = (i128::from(after_safety) * i128::from(p.value)).div_euclid(100);
    let after_percent = step(
        RuleName::Percent,
        Some(i64::from(p.value)),
        p.source,
        after_safety,
        i64::try_from(scaled).unwrap_or(after_safety),
    );
    let m = &rule.max_exposed;
    let after_cap = step(
        RuleName::MaxExposed,
        m.value,
        m.source,
        after_percent,
        m.value.map_or(after_percent, |cap| after_percent.min(cap)),
    );
    let l = &rule.min_listed;
    let after_min = step(
        RuleName::MinListed,
        Some(l.value),
        l.source,
        after_cap,
        // A negative value is left to the floor below, so explain says why it is 0.
        if after_cap > 0 && after_cap < l.value {
            0
        } else {
            after_cap
        },
    );
    if after_min < 0 {
        if let Some(explain) = explain {
            explain.push(ExplainStep::NeverNegative {
                before: after_min,
                after: 0,
            });
        }
        return 0;
    }
    after_min
}

/// Serves `wants` (in rank order) from `pool`: each gets min(want, left).
/// The result never sums to more than max(pool, 0).
pub fn partition(pool: i64, wants: &[i64]) -> Vec<i64> {
    partition_with_minimum(pool, wants, &vec![0; wants.len()])
}

/// Like `partition`, but a share below its listing's `min_listed` is 0 and
/// leaves its units to the listings after it: a listing the rules would not
/// show at that quantity does not show it because it was partitioned.
pub fn partition_with_minimum(pool: i64, wants: &[i64], minimums: &[i64]) -> Vec<i64> {
    let mut left = pool.max(0);
    wants
        .iter()
        .zip(minimums)
        .map(|(want, minimum)| {
            let got = (*want).clamp(0, left);
            if got < *minimum {
                return 0;
            }
            left -= got;
            got
        })
        .collect()
}

/// Computes every listing of one variant (outputs in the order of
/// `input.listings`).
pub fn compute_variant(ctx: &Context<'_>, input: &VariantInput<'_>) -> Vec<ListingAvailability> {
    let is_kit = !input.components.is_empty();
    let mut out: Vec<ListingAvailability> = input
        .listings
        .iter()
        .map(|listing| {
            let counted = ctx.channel_locations(&listing.channel);
            let mut explain = Vec::new();
            let pool = match (is_kit, ctx.explain) {
                (true, true) => {
                    let (pool, step) = kit_step(input.stock, input.components, counted);
                    explain.push(step);
                    pool
                }
                (true, false) => kit_pool(input.stock, input.components, counted),
                (false, true) => {
                    let (pool, locations) = location_pool(input.stock, counted);
                    explain.push(ExplainStep::Pool { locations, pool });
                    pool
                }
                (false, false) => pool_total(input.stock, counted),
            };
            let rule = ctx.rules.effective(&listing.channel, input.variant);
            let quantity = rule_steps(pool, &rule, ctx.explain.then_some(&mut explain));
            ListingAvailability {
                channel: listing.channel.clone(),
                sku: listing.sku.clone(),
                state: ListingState {
                    quantity,
                    availability: Availability::OutOfStock,
                    eta: None,
                    ship_window_days: None,
                },
                explain,
            }
        })
        .collect();

    if let Some(pre) = ctx.rules.preallocation() {
        let variant_pool = if is_kit {
            kit_pool(input.stock, input.components, &ctx.sellable)
        } else {
            pool_total(input.stock, &ctx.sellable)
        };
        if variant_pool <= pre.low_stock_threshold {
            preallocate(
                ctx,
                input,
                variant_pool,
                pre.low_stock_threshold,
                &pre.order,
                &mut out,
            );
        }
    }

    for (listing, result) in input.listings.iter().zip(out.iter_mut()) {
        // After any partition: capping only lowers, so Σ stays ≤ the pool.
        if let Some(limit) = ctx.max_quantity(&listing.channel) {
            if result.state.quantity > limit {
                if ctx.explain {
                    result.explain.push(ExplainStep::ChannelLimit {
                        limit,
                        before: result.state.quantity,
                        after: limit,
                    });
                }
                result.state.quantity = limit;
            }
        }
        if result.state.quantity > 0 {
            result.state.availability = Availability::InStock;
        } else {
            apply_eta(ctx, input, listing, result);
        }
    }
    out
}

fn preallocate(
    ctx: &Context<'_>,
    input: &VariantInput<'_>,
    variant_pool: i64,
    low_stock_threshold: i64,
    order: &PreallocationOrder,
    out: &mut [ListingAvailability],
) {
    let sold: Option<BTreeMap<&ChannelId, i64>> = match order {
        PreallocationOrder::Velocity { window_days } => {
            let since = ctx.now - Duration::days(i64::from(*window_days));
            let mut sold = BTreeMap::new();
            for sale in input.sales {
                if sale.sku == input.variant.sku && sale.at > since && sale.at <= ctx.now {
                    *sold.entry(&sale.channel).or_insert(0) += sale.qty;
                }
            }
            Some(sold)
        }
        PreallocationOrder::Explicit { .. } => None,
    };
    let sold_qty =
        |channel: &ChannelId| sold.as_ref().map(|s| s.get(channel).copied().unwrap_or(0));
    let order_position = |channel: &ChannelId| match order {
        PreallocationOrder::Explicit { channels } => channels
            .iter()
            .position(|c| c == channel)
            .unwrap_or(usize::MAX),
        PreallocationOrder::Velocity { .. } => 0,
    };
    let mut ranked: Vec<usize> = (0..input.listings.len()).collect();
    ranked.sort_by_key(|&i| {
        let listing = &input.listings[i];
        (
            listing.rank.is_none(),
            listing.rank,
            order_position(&listing.channel),
            std::cmp::Reverse(sold_qty(&listing.channel).unwrap_or(0)),
            &listing.channel,
            i,
        )
    });
    let wants: Vec<i64> = ranked.iter().map(|&i| out[i].state.quantity).collect();
    let minimums: Vec<i64> = ranked
        .iter()
        .map(|&i| {
            ctx.rules
                .effective(&input.listings[i].channel, input.variant)
                .min_listed
                .value
        })
        .collect();
    let shares = partition_with_minimum(variant_pool, &wants, &minimums);
    let mut left = variant_pool.max(0);
    for (position, (&i, share)) in ranked.iter().zip(shares).enumerate() {
        let listing = &input.listings[i];
        let result = &mut out[i];
        if ctx.explain {
            result.explain.push(ExplainStep::Preallocation {
                variant_pool,
                low_stock_threshold,
                position: position + 1,
                listing_rank: listing.rank,
                sold_qty: sold_qty(&listing.channel),
                left_before: left,
                before: result.state.quantity,
                after: share,
            });
        }
        left -= share;
        result.state.quantity = share;
    }
}

fn apply_eta(
    ctx: &Context<'_>,
    input: &VariantInput<'_>,
    listing: &Listing,
    result: &mut ListingAvailability,
) {
    let Some(rule) = ctx.rules.eta() else {
        return;
    };
    let supports = ctx
        .channels
        .get(&listing.channel)
        .is_some_and(|(channel, _)| channel.supports_backorder);
    if !supports {
        return;
    }
    let counted = ctx.channel_locations(&listing.channel);
    let within = i64::from(rule.backorder_within_days);
    let best = input
        .inbound
        .iter()
        .filter(|line| line.confirmed && line.qty > 0 && line.sku == input.variant.sku)
        .filter(|line| counted.binary_search(&line.location).is_ok())
        .filter_map(|line| {
            let eta = line.eta?;
            let days = (eta - ctx.today).num_days();
            (0..=within).contains(&days).then_some((eta, line, days))
        })
        .min_by(|a, b| (a.0, &a.1.po_id).cmp(&(b.0, &b.1.po_id)));
    let Some((eta, line, days)) = best else {
        return;
    };
    let days = u32::try_from(days).unwrap_or(u32::MAX);
    let window = (
        days.saturating_add(rule.handling_days_min),
        days.saturating_add(rule.handling_days_max),
    );
    if ctx.explain {
        result.explain.push(ExplainStep::Eta {
            po_id: line.po_id.clone(),
            location: line.location.clone(),
            eta,
            days_to_eta: days,
            ship_window_days: window,
        });
    }
    result.state.availability = Availability::Backorder;
    result.state.eta = Some(eta);
    result.state.ship_window_days = Some(window);
}
