//! The shop's state: inventory items with named quantities per location, orders, adjustment
//! groups, idempotency keys and the cost bucket; and Shopify's global ids.
//!
//! Sources:
//! <https://www.shopify.dev/apps/fulfillment/inventory-management-apps/quantities-states>
//! (the quantity names, `on_hand` as their sum, what an order moves),
//! <https://shopify.dev/changelog/new-inventory-states-safety-stock-damaged-and-quality-control>,
//! <https://shopify.dev/docs/api/admin-graphql/2024-07/objects/InventoryQuantity>,
//! <https://shopify.dev/docs/api/admin-graphql/2026-01/objects/InventoryLevel> (level ids).

use std::collections::{BTreeMap, HashMap};
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use serde_json::{json, Map, Value};

use super::Config;
use crate::common::{SimError, SimListing};

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Quantities {
    pub(super) available: i64,
    pub(super) committed: i64,
    pub(super) reserved: i64,
    pub(super) damaged: i64,
    pub(super) quality_control: i64,
    pub(super) safety_stock: i64,
    pub(super) incoming: i64,
}

impl Quantities {
    pub(super) fn on_hand(&self) -> i64 {
        self.available
            + self.committed
            + self.reserved
            + self.damaged
            + self.quality_control
            + self.safety_stock
    }
    pub(super) fn get(&self, name: &str) -> Option<i64> {
        Some(match name {
            "available" => self.available,
            "committed" => self.committed,
            "reserved" => self.reserved,
            "damaged" => self.damaged,
            "quality_control" => self.quality_control,
            "safety_stock" => self.safety_stock,
            "incoming" => self.incoming,
            "on_hand" => self.on_hand(),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Level {
    pub(super) q: Quantities,
    pub(super) created_at: String,
    pub(super) updated_at: String,
}

#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) id: u64,
    pub(super) sku: String,
    pub(super) variant_id: u64,
    pub(super) product_id: u64,
    pub(super) created_at: String,
    pub(super) updated_at: String,
    pub(super) levels: BTreeMap<u64, Level>,
}

#[derive(Debug, Clone)]
pub(super) struct LineItem {
    pub(super) id: u64,
    pub(super) item_id: u64,
    pub(super) variant_id: u64,
    pub(super) product_id: u64,
    pub(super) sku: String,
    pub(super) quantity: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Order {
    pub(super) id: u64,
    pub(super) number: u64,
    pub(super) created_at: String,
    /// Moved by every change of the order (placed, cancelled, refunded).
    pub(super) updated_at: String,
    pub(super) refunds: Vec<OrderRefund>,
    pub(super) cancelled_at: Option<String>,
    pub(super) refunded: bool,
    pub(super) lines: Vec<LineItem>,
    pub(super) location_id: u64,
}

/// A refund of the whole order (the simulator refunds every line in full).
#[derive(Debug, Clone)]
pub(super) struct OrderRefund {
    pub(super) id: u64,
    pub(super) created_at: String,
    pub(super) restock: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Change {
    pub(super) name: String,
    pub(super) delta: i64,
    pub(super) after: i64,
    pub(super) item: u64,
    pub(super) loc: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) id: u64,
    pub(super) created_at: String,
    pub(super) reason: String,
    pub(super) reference: Option<String>,
    pub(super) changes: Vec<Change>,
}

#[derive(Debug, Clone)]
pub(super) struct UserErr {
    pub(super) code: &'static str,
    pub(super) field: Option<Vec<String>>,
    pub(super) message: String,
}

#[derive(Debug, Clone)]
pub(super) struct Outcome {
    /// `inventoryAdjustQuantities` rather than `inventorySetQuantities`.
    pub(super) adjust: bool,
    pub(super) group: Option<Group>,
    pub(super) errors: Vec<UserErr>,
}

pub(super) enum Idem {
    InProgress,
    Done(String, Outcome),
}

pub(super) struct Bucket {
    pub(super) max: f64,
    pub(super) rate: f64,
    pub(super) level: f64,
    pub(super) at: Instant,
}

impl Bucket {
    pub(super) fn refill(&mut self) {
        let now = Instant::now();
        self.level =
            (self.level + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.max);
        self.at = now;
    }
    pub(super) fn status(&self) -> Value {
        json!({"maximumAvailable": self.max, "currentlyAvailable": self.level.floor() as i64, "restoreRate": self.rate})
    }
}

/// An order a customer may still cancel or refund: its id and a copy.
pub(super) fn open_order(st: &State, order_id: &str) -> Result<(u64, Order), SimError> {
    let id: u64 = order_id
        .parse()
        .map_err(|_| SimError::UnknownOrder(order_id.into()))?;
    let order = st
        .orders
        .get(&id)
        .cloned()
        .ok_or_else(|| SimError::UnknownOrder(order_id.into()))?;
    if order.cancelled_at.is_some() || order.refunded {
        return Err(SimError::InvalidState(
            "order already cancelled or refunded".into(),
        ));
    }
    Ok((id, order))
}

pub(super) struct State {
    pub(super) items: BTreeMap<u64, Item>,
    pub(super) by_sku: HashMap<String, u64>,
    /// (id, name); the first is where listings are stocked, the second stocks nothing.
    pub(super) locations: Vec<(u64, String)>,
    pub(super) orders: HashMap<u64, Order>,
    pub(super) idem: HashMap<String, Idem>,
    pub(super) webhook_url: Option<String>,
    pub(super) bucket: Bucket,
    pub(super) next_item: u64,
    pub(super) next_variant: u64,
    pub(super) next_product: u64,
    pub(super) next_order: u64,
    pub(super) next_line: u64,
    pub(super) next_group: u64,
    pub(super) next_refund: u64,
    pub(super) order_number: u64,
    pub(super) bulk_ops: Vec<super::bulk::BulkOp>,
    /// Result files of bulk operations by the token in their URL.
    pub(super) bulk_files: HashMap<String, super::bulk::BulkFile>,
    pub(super) next_bulk: u64,
    clock: Option<crate::SimClock>,
}

pub(super) fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl State {
    pub(super) fn new(c: &Config) -> State {
        State {
            items: BTreeMap::new(),
            by_sku: HashMap::new(),
            locations: vec![
                (71_234_567_001, "Main warehouse".into()),
                (71_234_567_002, "Pop-up store".into()),
            ],
            orders: HashMap::new(),
            idem: HashMap::new(),
            webhook_url: c.webhook_url.clone(),
            bucket: Bucket {
                max: c.bucket_size,
                rate: c.restore_rate,
                level: c.bucket_size,
                at: Instant::now(),
            },
            next_item: 48_000_000_001,
            next_variant: 44_000_000_001,
            next_product: 8_000_000_001,
            // Ids above 2^53, as real REST ids can be.
            next_order: 9_007_199_254_741_001,
            next_line: 14_000_000_001,
            next_group: 30_000_000_001,
            next_refund: 900_000_001,
            order_number: 1001,
            bulk_ops: Vec::new(),
            bulk_files: HashMap::new(),
            next_bulk: 4_039_184_154_001,
            clock: c.clock.clone(),
        }
    }

    /// The shop's time for the dates orders carry.
    pub(super) fn order_time(&self) -> String {
        let now = self
            .clock
            .as_ref()
            .map_or_else(chrono::Utc::now, crate::SimClock::now);
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    pub(super) fn primary(&self) -> u64 {
        self.locations[0].0
    }

    pub(super) fn listing(&self, item: &Item) -> SimListing {
        let loc = self.primary();
        let avail = item.levels.get(&loc).map(|l| l.q.available).unwrap_or(0);
        let mut external = Map::new();
        external.insert(
            "inventory_item_id".into(),
            json!(format!("gid://shopify/InventoryItem/{}", item.id)),
        );
        external.insert(
            "location_id".into(),
            json!(format!("gid://shopify/Location/{loc}")),
        );
        external.insert(
            "variant_id".into(),
            json!(format!("gid://shopify/ProductVariant/{}", item.variant_id)),
        );
        SimListing {
            sku: item.sku.clone(),
            external,
            quantity: avail,
            availability: if avail > 0 {
                "in_stock"
            } else {
                "out_of_stock"
            }
            .into(),
        }
    }
}

// Global ids

pub(super) fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

pub(super) fn level_gid(item: u64, loc: u64) -> String {
    format!("gid://shopify/InventoryLevel/{loc}?inventory_item_id={item}")
}

/// `gid://shopify/Kind/123[?query]` → (Kind, 123, query).
pub(super) fn parse_gid(s: &str) -> Option<(&str, u64, Option<&str>)> {
    let rest = s.strip_prefix("gid://shopify/")?;
    let (kind, tail) = rest.split_once('/')?;
    let (num, q) = match tail.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (tail, None),
    };
    Some((kind, num.parse().ok()?, q))
}

pub(super) fn parse_level_gid(s: &str) -> Option<(u64, u64)> {
    let (kind, loc, q) = parse_gid(s)?;
    if kind != "InventoryLevel" {
        return None;
    }
    let item = q?.strip_prefix("inventory_item_id=")?.parse().ok()?;
    Some((item, loc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids() {
        assert_eq!(
            parse_gid("gid://shopify/InventoryItem/30322695"),
            Some(("InventoryItem", 30322695, None))
        );
        assert_eq!(
            parse_level_gid("gid://shopify/InventoryLevel/655441491?inventory_item_id=808950810"),
            Some((808950810, 655441491))
        );
        assert_eq!(parse_gid("gid://other/InventoryItem/1"), None);
    }

    #[test]
    fn on_hand_identity() {
        let q = Quantities {
            available: 5,
            committed: 2,
            reserved: 1,
            damaged: 1,
            quality_control: 1,
            safety_stock: 1,
            incoming: 9,
        };
        assert_eq!(q.on_hand(), 11);
    }
}
