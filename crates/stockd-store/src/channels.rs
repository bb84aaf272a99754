//! Channels, listings, kits and versioned rules: what the availability
//! computation needs besides stock. These change rarely and never touch
//! quantities, so they are written outside the event writer, each in a
//! transaction of its own.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockd_core::availability::{Bundle, Listing, Sale};
use stockd_core::rules::RulesDocument;
use stockd_core::{ChannelId, InboundLine, LocationId, Quantities, Sku, Variant};

/// Which API a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Shopify,
    Woocommerce,
    Bol,
    Amazon,
    Gmc,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Shopify => "shopify",
            ChannelKind::Woocommerce => "woocommerce",
            ChannelKind::Bol => "bol",
            ChannelKind::Amazon => "amazon",
            ChannelKind::Gmc => "gmc",
        }
    }

    pub fn parse(raw: &str) -> Option<ChannelKind> {
        Some(match raw {
            "shopify" => ChannelKind::Shopify,
            "woocommerce" => ChannelKind::Woocommerce,
            "bol" => ChannelKind::Bol,
            "amazon" => ChannelKind::Amazon,
            "gmc" => ChannelKind::Gmc,
            _ => return None,
        })
    }

    /// The most a channel's API accepts as a quantity (bol.com's stock
    /// amount is 0–999); the computation caps at it and says so.
    pub fn max_quantity(self) -> Option<i64> {
        match self {
            ChannelKind::Bol => Some(999),
            _ => None,
        }
    }

    /// Channels whose API can show a backorder date to shoppers.
    pub fn supports_backorder(self) -> bool {
        matches!(
            self,
            ChannelKind::Shopify | ChannelKind::Woocommerce | ChannelKind::Gmc
        )
    }
}

/// A sales channel instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub id: ChannelId,
    pub kind: ChannelKind,
    /// Locations whose stock it sells; `None` = every sellable location.
    pub locations: Option<Vec<LocationId>>,
    pub enabled: bool,
}

/// A variant sold on a channel, with the channel's own ids for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingRecord {
    pub channel: ChannelId,
    pub sku: Sku,
    /// Channel-specific ids (inventory item, offer id, ASIN, …), kept as given.
    pub external: serde_json::Map<String, serde_json::Value>,
    /// Pre-allocation priority (lower first).
    pub rank: Option<i32>,
}

/// One version of the rules document. Every version is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesVersion {
    pub version: u32,
    pub document: RulesDocument,
    pub message: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// A variant with its stock rows and inbound lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantStock {
    pub variant: Variant,
    pub stock: Vec<(LocationId, Quantities)>,
    pub inbound: Vec<InboundLine>,
}

/// Storage of channels, listings, kits and rules versions.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Creates or replaces a channel.
    async fn upsert_channel(&self, channel: ChannelRecord) -> Result<(), StoreError>;
    async fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError>;
    async fn channel(&self, id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError>;

    /// Creates or replaces listings (by channel and SKU), all in one transaction.
    async fn upsert_listings(&self, listings: Vec<ListingRecord>) -> Result<usize, StoreError>;
    /// Listings of a channel in SKU order, after `after`.
    async fn listings(
        &self,
        channel: &ChannelId,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<ListingRecord>, StoreError>;
    /// Every listing of the given SKUs, on every channel.
    async fn listings_of(&self, skus: &[Sku]) -> Result<Vec<ListingRecord>, StoreError>;
    /// The same listings as an availability computation needs them
    /// (channel, SKU, rank; no external ids), in no particular order.
    async fn listing_keys(&self, skus: &[Sku]) -> Result<Vec<Listing>, StoreError>;
    /// SKUs that have a listing, in order, after `after` (for whole-catalog passes).
    async fn listed_skus(&self, after: Option<&Sku>, limit: u32) -> Result<Vec<Sku>, StoreError>;

    /// Creates or replaces a kit definition, and records the change with its
    /// author in the same transaction. The caller validates the whole set first.
    async fn put_bundle(&self, bundle: Bundle, author: &str) -> Result<(), StoreError>;
    /// Removes a kit definition (recording the change); false when there was none.
    async fn delete_bundle(&self, kit: &Sku, author: &str) -> Result<bool, StoreError>;
    async fn bundles(&self) -> Result<Vec<Bundle>, StoreError>;
    /// Recorded kit definition changes, oldest first: of one kit or of all,
    /// with ids above `after`.
    async fn kit_changes(
        &self,
        kit: Option<&Sku>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<KitChange>, StoreError>;

    /// Stores `document` as the next version and returns it.
    async fn add_rules_version(
        &self,
        document: RulesDocument,
        message: String,
        author: String,
    ) -> Result<RulesVersion, StoreError>;
    /// The newest version: the active one.
    async fn active_rules(&self) -> Result<Option<RulesVersion>, StoreError>;
    async fn rules_version(&self, version: u32) -> Result<Option<RulesVersion>, StoreError>;
    /// Every version, oldest first.
    async fn rules_versions(&self) -> Result<Vec<RulesVersion>, StoreError>;

    /// The known variants among `skus` (a listing may name only those).
    async fn known_variants(&self, skus: &[Sku]) -> Result<Vec<Sku>, StoreError>;
    /// Known variants among `skus` with their stock rows and inbound lines.
    async fn variant_stock(&self, skus: &[Sku]) -> Result<Vec<VariantStock>, StoreError>;
    /// Units sold per channel of `skus` since `since`, from order events.
    async fn sales_since(
        &self,
        skus: &[Sku],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sale>, StoreError>;
}

/// One recorded change of a kit definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KitChange {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kit: Sku,
    /// `put` (created or replaced) or `delete`.
    pub action: String,
    /// The components after the change (empty for a removal).
    pub components: Vec<stockd_core::availability::BundleComponent>,
    pub author: String,
}

impl KitChange {
    /// Builds a change from its stored columns.
    pub(crate) fn from_columns(
        id: i64,
        at_ms: i64,
        kit: String,
        action: String,
        components: &str,
        author: String,
    ) -> Result<KitChange, StoreError> {
        Ok(KitChange {
            id,
            at: DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
            kit: crate::rows::parse_id(kit, Sku::parse)?,
            action,
            components: serde_json::from_str(components)?,
            author,
        })
    }
}

// ---------------------------------------------------------------------------
// The SQL of both adapters, written once with `?N` placeholders (PostgreSQL's
// `$N` form is derived by `outbox::pg`). The dialects differ only in batch
// writes: PostgreSQL sends a batch as one `UNNEST` statement (one round trip),
// SQLite runs one cached statement per row in its transaction (in process, no
// round trips); both forms stand here side by side. Per-SKU reads are in
// `hot.rs` with the other statements whose plans are checked.

pub(crate) const CHANNEL_UPSERT: &str = "INSERT INTO channels (id, kind, locations, enabled) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, \
     locations = excluded.locations, enabled = excluded.enabled";

pub(crate) const CHANNELS_ALL: &str =
    "SELECT id, kind, locations, enabled FROM channels ORDER BY id";

pub(crate) const CHANNEL_ONE: &str =
    "SELECT id, kind, locations, enabled FROM channels WHERE id = ?1";

/// SQLite: one listing per execution.
pub(crate) const SQLITE_LISTING_UPSERT: &str =
    "INSERT INTO listings (channel, sku, external, rank) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (channel, sku) DO UPDATE SET \
     external = excluded.external, rank = excluded.rank";

/// PostgreSQL: the whole batch as arrays (a (channel, SKU) pair at most once:
/// `ON CONFLICT` cannot touch a row twice in one statement).
pub(crate) const PG_LISTINGS_UPSERT: &str = "INSERT INTO listings (channel, sku, external, rank) \
     SELECT * FROM UNNEST(?1::text[], ?2::text[], ?3::text[], ?4::int4[]) \
     ON CONFLICT (channel, sku) DO UPDATE SET \
     external = excluded.external, rank = excluded.rank";

pub(crate) const BUNDLE_DELETE: &str = "DELETE FROM bundle_components WHERE kit = ?1";

/// SQLite: one component per execution.
pub(crate) const SQLITE_BUNDLE_COMPONENT_INSERT: &str =
    "INSERT INTO bundle_components (kit, position, component, qty) VALUES (?1, ?2, ?3, ?4)";

/// PostgreSQL: every component of the kit as arrays.
pub(crate) const PG_BUNDLE_COMPONENTS_INSERT: &str =
    "INSERT INTO bundle_components (kit, position, component, qty) \
     SELECT ?1, * FROM UNNEST(?2::int4[], ?3::text[], ?4::int4[])";

pub(crate) const KIT_CHANGE_INSERT: &str =
    "INSERT INTO kit_changes (at_ms, kit, action, components, author) VALUES (?1, ?2, ?3, ?4, ?5)";

/// Every kit's changes (`?1` NULL) or one kit's, after an id, oldest first.
pub(crate) const KIT_CHANGES: &str = "SELECT id, at_ms, kit, action, components, author \
     FROM kit_changes WHERE (CAST(?1 AS TEXT) IS NULL OR kit = ?1) AND id > ?2 ORDER BY id LIMIT ?3";

pub(crate) const BUNDLES_ALL: &str =
    "SELECT kit, component, qty FROM bundle_components ORDER BY kit, position";

/// The next version is taken inside the insert; the caller serialises
/// writers (SQLite: an immediate transaction; PostgreSQL: an advisory lock).
pub(crate) const RULES_INSERT_NEXT: &str =
    "INSERT INTO rules_versions (version, document, message, author, created_at) \
     SELECT COALESCE(MAX(version), 0) + 1, ?1, ?2, ?3, ?4 FROM rules_versions \
     RETURNING version";

pub(crate) const RULES_ACTIVE: &str = "SELECT version, document, message, author, created_at \
     FROM rules_versions ORDER BY version DESC LIMIT 1";

pub(crate) const RULES_ONE: &str = "SELECT version, document, message, author, created_at \
     FROM rules_versions WHERE version = ?1";

pub(crate) const RULES_ALL: &str = "SELECT version, document, message, author, created_at \
     FROM rules_versions ORDER BY version";

/// Sales in the order events of a ledger row, for one SKU.
pub(crate) fn sales_in(
    event_json: &str,
    sku: &Sku,
    at: DateTime<Utc>,
) -> Result<Vec<Sale>, StoreError> {
    let event: stockd_core::Event = serde_json::from_str(event_json)?;
    let stockd_core::EventKind::Order { order, lines } = event.kind else {
        return Ok(Vec::new());
    };
    let Some(channel) = order.channel else {
        return Ok(Vec::new());
    };
    Ok(lines
        .into_iter()
        .filter(|line| line.sku == *sku)
        .map(|line| Sale {
            channel: channel.clone(),
            sku: line.sku,
            qty: line.qty,
            at,
        })
        .collect())
}

/// A channel's location list as stored (JSON array text, or NULL for all).
pub(crate) fn locations_column(channel: &ChannelRecord) -> Result<Option<String>, StoreError> {
    Ok(channel
        .locations
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?)
}

pub(crate) fn channel_from_columns(
    id: String,
    kind: &str,
    locations: Option<String>,
    enabled: bool,
) -> Result<ChannelRecord, StoreError> {
    Ok(ChannelRecord {
        id: crate::rows::parse_id(id, ChannelId::parse)?,
        kind: ChannelKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown channel kind {kind}")))?,
        locations: locations
            .map(|raw| serde_json::from_str::<Vec<LocationId>>(&raw))
            .transpose()?,
        enabled,
    })
}

pub(crate) fn listing_from_columns(
    channel: String,
    sku: String,
    external: &str,
    rank: Option<i32>,
) -> Result<ListingRecord, StoreError> {
    Ok(ListingRecord {
        channel: crate::rows::parse_id(channel, ChannelId::parse)?,
        sku: crate::rows::parse_id(sku, Sku::parse)?,
        external: serde_json::from_str(external)?,
        rank,
    })
}

pub(crate) fn listing_key_from_columns(
    channel: String,
    sku: String,
    rank: Option<i32>,
) -> Result<Listing, StoreError> {
    Ok(Listing {
        channel: crate::rows::parse_id(channel, ChannelId::parse)?,
        sku: crate::rows::parse_id(sku, Sku::parse)?,
        rank,
    })
}

/// Groups (kit, component, qty) rows, ordered by kit and position, into bundles.
pub(crate) fn bundles_from_rows(
    rows: Vec<(String, String, i64)>,
) -> Result<Vec<Bundle>, StoreError> {
    let mut bundles: Vec<Bundle> = Vec::new();
    for (kit, component, qty) in rows {
        let kit = crate::rows::parse_id(kit, Sku::parse)?;
        let component = stockd_core::availability::BundleComponent {
            sku: crate::rows::parse_id(component, Sku::parse)?,
            qty: u32::try_from(qty).map_err(crate::rows::corrupt)?,
        };
        match bundles.last_mut() {
            Some(last) if last.kit == kit => last.components.push(component),
            _ => bundles.push(Bundle {
                kit,
                components: vec![component],
            }),
        }
    }
    Ok(bundles)
}
