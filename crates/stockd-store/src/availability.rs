//! What every listing may show: loads what the core's
//! `availability::compute_variant` needs (active rules, enabled channels,
//! locations, kit definitions, the stock of the SKUs and, for kits, of their
//! components down to the leaves, listings and — when pre-allocating by
//! velocity — recent sales) and runs it.
//!
//! The loading is generic over [`AvailabilityReads`], so the same code runs
//! on pooled readers (API reads, previews) and on the writer's connection
//! inside an event group's transaction (the desired states of the outbox).
//!
//! Time comes from the caller: `now` bounds the velocity window, and today's
//! date — taken in UTC — dates ETAs.

use crate::{ChannelRecord, RulesVersion, Store, StoreError, VariantStock};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};
use stockd_core::availability::Bundle;
use stockd_core::availability::{
    compute_variant, validate_bundles, BundleGraph, Channel, ComponentStock, Context, Listing,
    ListingAvailability, Sale, VariantInput,
};
use stockd_core::rules::{PreallocationOrder, Rules, RulesDocument};
use stockd_core::{ChannelId, Location, Sku};

/// The reads the availability computation needs.
#[allow(async_fn_in_trait)]
pub trait AvailabilityReads {
    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError>;
    async fn locations(&self) -> Result<Vec<Location>, StoreError>;
    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError>;
    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError>;
    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError>;
    /// The listings of `skus` as (channel, SKU, rank), in no particular order.
    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError>;
    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError>;
}

impl AvailabilityReads for dyn Store + '_ {
    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        crate::ChannelStore::channels(self).await
    }
    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        Store::locations(self).await
    }
    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        crate::ChannelStore::bundles(self).await
    }
    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError> {
        crate::ChannelStore::active_rules(self).await
    }
    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError> {
        crate::ChannelStore::variant_stock(self, skus).await
    }
    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError> {
        crate::ChannelStore::listing_keys(self, skus).await
    }
    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError> {
        crate::ChannelStore::sales_since(self, skus, since).await
    }
}

/// What a computation reads besides stock: channels, locations, kits and
/// the active rules.
pub struct LoadedSetup {
    pub setup: Setup,
    pub rules: RuleSet,
}

/// A store's loaded setup with the generation it was loaded at.
pub type SetupCache = std::sync::Mutex<Option<(i64, std::sync::Arc<LoadedSetup>)>>;

/// The setup for API reads: loaded again only when the store's setup
/// generation moved (loading reads and validates every kit definition and
/// the rules, which a page or one SKU must not pay for on a large catalog).
pub async fn cached_setup(store: &dyn Store) -> Result<std::sync::Arc<LoadedSetup>, StoreError> {
    let generation = store.setup_generation().await?;
    if let Ok(cache) = store.setup_cache().lock() {
        if let Some((cached, loaded)) = cache.as_ref() {
            if *cached == generation {
                return Ok(loaded.clone());
            }
        }
    }
    let setup = Setup::load(store).await?;
    let rules = active_rules(store, &setup).await?;
    let loaded = std::sync::Arc::new(LoadedSetup { setup, rules });
    if let Ok(mut cache) = store.setup_cache().lock() {
        *cache = Some((generation, loaded.clone()));
    }
    Ok(loaded)
}

/// Results keyed by (channel, sku).
pub type Computed = BTreeMap<(ChannelId, Sku), ListingAvailability>;

/// Validated rules and the version they come from (`None`: no version yet,
/// or a document being previewed).
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Rules,
    pub version: Option<u32>,
}

/// Everything besides stock that the computation reads: the same for every
/// SKU of one pass.
pub struct Setup {
    pub channels: Vec<Channel>,
    /// Every channel id, enabled or not (what a rules document may name).
    pub known_channels: Vec<ChannelId>,
    pub locations: Vec<Location>,
    pub graph: BundleGraph,
}

impl Setup {
    /// Loads enabled channels, locations and kit definitions.
    pub async fn load<R: AvailabilityReads + ?Sized>(store: &R) -> Result<Setup, StoreError> {
        let records = store.channels().await?;
        let known_channels = records.iter().map(|c| c.id.clone()).collect();
        let channels = records
            .into_iter()
            .filter(|c| c.enabled)
            .map(|c| Channel {
                supports_backorder: c.kind.supports_backorder(),
                max_quantity: c.kind.max_quantity(),
                id: c.id,
                locations: c.locations,
            })
            .collect();
        let locations = store.locations().await?;
        let bundles = store.bundles().await?;
        let graph = validate_bundles(&bundles).map_err(|errors| {
            StoreError::Corrupt(format!(
                "stored kit definitions are invalid: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        Ok(Setup {
            channels,
            known_channels,
            locations,
            graph,
        })
    }

    fn is_enabled(&self, channel: &ChannelId) -> bool {
        self.channels.iter().any(|c| &c.id == channel)
    }
}

/// The active rules (an empty document — expose everything — when there is none).
pub async fn active_rules<R: AvailabilityReads + ?Sized>(
    store: &R,
    setup: &Setup,
) -> Result<RuleSet, StoreError> {
    match store.active_rules().await? {
        Some(active) => {
            let rules = active
                .document
                .validate(&setup.known_channels)
                .map_err(|errors| {
                    StoreError::Corrupt(format!(
                        "stored rules version {} no longer validates: {}",
                        active.version,
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
            Ok(RuleSet {
                rules,
                version: Some(active.version),
            })
        }
        None => Ok(RuleSet {
            rules: empty_rules(),
            version: None,
        }),
    }
}

/// The rules of an empty document: every channel sees its whole pool.
pub fn empty_rules() -> Rules {
    // An empty document names nothing, so it validates against any channels.
    RulesDocument::default().validate(&[]).unwrap_or_default()
}

/// The stock side of one pass over some SKUs.
pub struct StockData {
    variants: Vec<VariantStock>,
    /// Stock of every component (at any depth) of the kits among the SKUs.
    components: BTreeMap<Sku, VariantStock>,
    listings: BTreeMap<Sku, Vec<Listing>>,
    sales: BTreeMap<Sku, Vec<Sale>>,
}

/// Longest velocity window among `rule_sets`, in days (`None`: none pre-allocates by velocity).
fn velocity_window(rule_sets: &[&RuleSet]) -> Option<u32> {
    rule_sets
        .iter()
        .filter_map(|set| match set.rules.preallocation().map(|p| &p.order) {
            Some(PreallocationOrder::Velocity { window_days }) => Some(*window_days),
            _ => None,
        })
        .max()
}

impl StockData {
    /// Loads what computing `skus` under any of `rule_sets` needs.
    pub async fn load<R: AvailabilityReads + ?Sized>(
        store: &R,
        setup: &Setup,
        skus: &[Sku],
        rule_sets: &[&RuleSet],
        now: DateTime<Utc>,
    ) -> Result<StockData, StoreError> {
        // Listings first: SKUs listed on no enabled channel need no stock
        // (most SKUs an event group touches in a large catalog).
        let mut listings: BTreeMap<Sku, Vec<Listing>> = BTreeMap::new();
        for listing in store.listing_keys(skus).await? {
            if setup.is_enabled(&listing.channel) {
                listings
                    .entry(listing.sku.clone())
                    .or_default()
                    .push(listing);
            }
        }
        let listed: Vec<Sku> = listings.keys().cloned().collect();
        let variants = if listed.is_empty() {
            Vec::new()
        } else {
            store.variant_stock(&listed).await?
        };
        let mut wanted: BTreeSet<Sku> = BTreeSet::new();
        for v in &variants {
            if setup.graph.is_kit(&v.variant.sku) {
                wanted.extend(setup.graph.components_of(&v.variant.sku));
            }
        }
        let components = if wanted.is_empty() {
            BTreeMap::new()
        } else {
            let wanted: Vec<Sku> = wanted.into_iter().collect();
            store
                .variant_stock(&wanted)
                .await?
                .into_iter()
                .map(|v| (v.variant.sku.clone(), v))
                .collect()
        };
        let mut sales: BTreeMap<Sku, Vec<Sale>> = BTreeMap::new();
        if let Some(days) = velocity_window(rule_sets).filter(|_| !listed.is_empty()) {
            let since = now - Duration::days(i64::from(days));
            for sale in store.sales_since(&listed, since).await? {
                sales.entry(sale.sku.clone()).or_default().push(sale);
            }
        }
        Ok(StockData {
            variants,
            components,
            listings,
            sales,
        })
    }

    /// The component tree of a kit, from the loaded stock (a component with
    /// no stock row counts as empty).
    fn component_tree(&self, graph: &BundleGraph, kit: &Sku) -> Vec<ComponentStock> {
        graph
            .components(kit)
            .iter()
            .map(|c| ComponentStock {
                sku: c.sku.clone(),
                qty_per_kit: c.qty,
                stock: self
                    .components
                    .get(&c.sku)
                    .map(|v| v.stock.clone())
                    .unwrap_or_default(),
                components: self.component_tree(graph, &c.sku),
            })
            .collect()
    }

    /// Computes every listing of the loaded SKUs under `rules`.
    pub fn compute(
        &self,
        setup: &Setup,
        rules: &Rules,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Computed {
        self.compute_in(
            setup,
            &Context::new(rules, &setup.channels, &setup.locations, today, now),
        )
    }

    /// `compute` without explain trails (the same states): for the writer's
    /// refresh and whole-catalog passes, which read only the states.
    pub fn compute_states(
        &self,
        setup: &Setup,
        rules: &Rules,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Computed {
        self.compute_in(
            setup,
            &Context::new(rules, &setup.channels, &setup.locations, today, now).states_only(),
        )
    }

    fn compute_in(&self, setup: &Setup, ctx: &Context<'_>) -> Computed {
        let mut out = Computed::new();
        for v in &self.variants {
            let sku = &v.variant.sku;
            let Some(listings) = self.listings.get(sku) else {
                continue;
            };
            let components = self.component_tree(&setup.graph, sku);
            let input = VariantInput {
                variant: &v.variant,
                stock: &v.stock,
                components: &components,
                inbound: &v.inbound,
                listings,
                sales: self.sales.get(sku).map(Vec::as_slice).unwrap_or(&[]),
            };
            for result in compute_variant(ctx, &input) {
                out.insert((result.channel.clone(), result.sku.clone()), result);
            }
        }
        out
    }
}

/// Computes every listing of `skus` under the active rules.
pub async fn compute(
    store: &dyn Store,
    skus: &[Sku],
    now: DateTime<Utc>,
) -> Result<(Option<u32>, Computed), StoreError> {
    let loaded = cached_setup(store).await?;
    let (setup, rules) = (&loaded.setup, &loaded.rules);
    let data = StockData::load(store, setup, skus, &[rules], now).await?;
    Ok((
        rules.version,
        data.compute(setup, &rules.rules, now.date_naive(), now),
    ))
}
