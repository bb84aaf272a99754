//! Shopify Admin API (GraphQL) connector.
//!
//! Each behaviour cites the Shopify Admin API documentation it follows.
//!
//! - Pushes are absolute `inventorySetQuantities` calls on the `available`
//!   quantity, up to 250 quantities per call (<https://shopify.dev/docs/api/admin-graphql>, <https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>), with
//!   compare-and-set: `compareQuantity` before API version 2026-01,
//!   `changeFromQuantity` plus `@idempotent(key:)` from 2026-01 on.
//! - A stale compare or an invalid item fails only that item: its current
//!   level is read back and the rest of the batch is sent again.
//! - Reads use `nodes(ids:)` on inventory items, one location per query.
//! - Every document is paced by a cost bucket that adopts the channel's
//!   `throttleStatus` (<https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>).
//! - The whole shop is read back through a bulk operation (`bulk.rs`,
//!   <https://shopify.dev/docs/api/usage/bulk-operations/queries>): one
//!   `bulkOperationRunQuery`, polls of the `BulkOperation`
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/objects/BulkOperation>)
//!   and the download of its JSONL file.
//! - Webhooks: `X-Shopify-Hmac-Sha256` over the exact body, and the
//!   `orders/create`, `orders/cancelled` and `refunds/create` topics (<https://shopify.dev/docs/apps/build/webhooks/delivery-structure>).

mod bulk;
mod graphql;
mod inventory;
mod orders;
mod webhooks;

use crate::encoding::percent_encode;
use crate::ratelimit::Limiter;
use crate::{
    constant_time_eq, Availability, BulkProgress, BulkRead, ChannelError, ChannelLevel, Clock,
    Connector, ErrorClass, External, HttpRequest, HttpResponse, ItemOutcome, LevelQuery,
    OrderChange, OrderChangeKind, OrderLineRef, OrderPoll, PushItem, Transport, WebhookAction,
    WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
pub use bulk::{bulk_documents, BulkPolling};
pub use graphql::graphql_documents;
use graphql::*;
use hmac::{Hmac, Mac};
use inventory::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The API version whose schema (the official admin schema in `specs/`) the
/// connector is validated against.
pub const DEFAULT_API_VERSION: &str = "2025-01";
/// Any array input takes at most 250 items (<https://shopify.dev/api/usage/limits>).
pub const MAX_BATCH: usize = 250;
/// First version with `changeFromQuantity` and `@idempotent` (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
const CHANGE_FROM_VERSION: &str = "2026-01";
/// `inventorySetQuantities` refuses totals beyond ±1,000,000,000 (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
const MAX_QUANTITY: i64 = 1_000_000_000;
const BODY_EXCERPT: usize = 2048;
/// From this many listings a reconciliation reads the shop through a bulk
/// operation: below it, a few `nodes(ids:)` pages cost less than the
/// operation's run, polls and download.
pub const BULK_READ_FROM: usize = 1_000;

type HmacSha256 = Hmac<Sha256>;

/// Connection settings for one shop.
#[derive(Debug, Clone)]
pub struct Config {
    /// e.g. `https://example.myshopify.com`, without a trailing slash.
    pub shop_url: String,
    /// `YYYY-MM` (or `unstable`); decides the compare-and-set flavour.
    pub api_version: String,
    /// Admin API access token (`X-Shopify-Access-Token`).
    pub access_token: String,
    /// The app's client secret, which signs webhooks.
    pub webhook_secret: String,
    /// Initial cost bucket size; corrected from `throttleStatus`.
    pub bucket_size: f64,
    /// Initial restore rate in points per second; corrected likewise.
    pub restore_rate: f64,
    /// How often orders are read back (`orders` by `updated_at`), so an
    /// order whose webhooks were lost still reaches the ledger; `None`:
    /// webhooks only.
    pub order_poll_interval: Option<Duration>,
    /// How far the first poll after start looks back.
    pub order_lookback: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // <https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>: the older published bucket, 1000 points leaking 50 per second;
        // the channel's own numbers replace it after the first answer.
        Config {
            shop_url: String::new(),
            api_version: DEFAULT_API_VERSION.to_string(),
            access_token: String::new(),
            webhook_secret: String::new(),
            bucket_size: 1000.0,
            restore_rate: 50.0,
            order_poll_interval: None,
            order_lookback: Duration::from_secs(3600),
        }
    }
}

/// The Shopify connector.
pub struct Shopify {
    config: Config,
    transport: Arc<dyn Transport>,
    limiter: Limiter,
    /// Last restore rate seen (f64 bits), for Retry-After estimates.
    restore_rate: AtomicU64,
    /// Last bucket size seen (f64 bits): no call may cost more than it holds.
    bucket_size: AtomicU64,
    change_from: bool,
    /// The largest set call answered so far: (items, the requested cost the
    /// channel computed for it). The bucket must hold the *requested* cost
    /// (<https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>), so a call of no more items reserves that, not the static
    /// estimate, which is far higher when the channel prices mutations flat.
    set_cost_seen: std::sync::Mutex<Option<(usize, f64)>>,
    bulk_polling: BulkPolling,
    clock: Clock,
}

impl std::fmt::Debug for Shopify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shopify")
            .field("shop_url", &self.config.shop_url)
            .field("api_version", &self.config.api_version)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// Whether `version` uses `changeFromQuantity` + `@idempotent` (2026-01 on)
/// rather than `compareQuantity` (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>). Versions compare as `YYYY-MM`.
fn uses_change_from(version: &str) -> bool {
    let v = version.trim();
    if v == "unstable" {
        return true;
    }
    let b = v.as_bytes();
    let well_formed = b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit());
    well_formed && v >= CHANGE_FROM_VERSION
}

impl Shopify {
    pub fn new(config: Config, transport: Arc<dyn Transport>) -> Shopify {
        Shopify::with_clock(config, transport, Arc::new(chrono::Utc::now))
    }

    /// As [`Shopify::new`], with the wall clock that order polls use.
    pub fn with_clock(config: Config, transport: Arc<dyn Transport>, clock: Clock) -> Shopify {
        let limiter = Limiter::new(config.bucket_size, config.restore_rate);
        let change_from = uses_change_from(&config.api_version);
        let restore_rate = AtomicU64::new(config.restore_rate.to_bits());
        let bucket_size = AtomicU64::new(config.bucket_size.to_bits());
        Shopify {
            config,
            transport,
            limiter,
            restore_rate,
            bucket_size,
            change_from,
            set_cost_seen: std::sync::Mutex::new(None),
            bulk_polling: BulkPolling::default(),
            clock,
        }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    /// How bulk reads wait for their operation.
    pub fn with_bulk_polling(mut self, polling: BulkPolling) -> Shopify {
        self.bulk_polling = polling;
        self
    }

    /// What a set call of `items` will be asked to hold: the channel's own
    /// figure for a call at least as large, else the static estimate.
    fn set_estimate(&self, items: usize) -> f64 {
        let seen = self.set_cost_seen.lock().ok().and_then(|g| *g);
        match seen {
            Some((n, requested)) if n >= items => requested.min(set_cost(items)),
            _ => set_cost(items),
        }
    }

    fn learn_set_cost(&self, items: usize, requested: f64) {
        if let Ok(mut seen) = self.set_cost_seen.lock() {
            let larger = seen.is_none_or(|(n, r)| items > n || (items == n && requested > r));
            if larger {
                *seen = Some((items, requested));
            }
        }
    }

    /// The GraphQL endpoint (<https://shopify.dev/docs/api/admin-graphql>).
    pub fn endpoint(&self) -> String {
        format!(
            "{}/admin/api/{}/graphql.json",
            self.config.shop_url.trim_end_matches('/'),
            self.config.api_version
        )
    }

    /// Items per call so that one call's cost (with margin) fits in the
    /// bucket: a call costing more than the bucket holds is throttled forever.
    fn items_per_call(&self, cost: fn(usize) -> f64) -> usize {
        let size = f64::from_bits(self.bucket_size.load(Ordering::Relaxed));
        let mut n = MAX_BATCH;
        while n > 1 && with_margin(cost(n)) > size {
            n = n * 9 / 10;
        }
        n.max(1)
    }

    fn current_restore_rate(&self) -> f64 {
        let rate = f64::from_bits(self.restore_rate.load(Ordering::Relaxed));
        if rate > 0.0 {
            rate
        } else {
            1.0
        }
    }
}

#[async_trait]
impl Connector for Shopify {
    fn kind(&self) -> &'static str {
        "shopify"
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let mut ready: Vec<Entry> = Vec::new();
        let mut unknown: Vec<Entry> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let (inventory_item, location) = match item_and_location(&item.external) {
                Ok(ids) => ids,
                Err(e) => {
                    outcomes[index] = Some(ItemOutcome::Failed(e));
                    continue;
                }
            };
            let code = if item.quantity < 0 {
                Some("INVALID_QUANTITY_NEGATIVE")
            } else if item.quantity > MAX_QUANTITY {
                Some("INVALID_QUANTITY_TOO_HIGH")
            } else {
                None
            };
            if let Some(code) = code {
                outcomes[index] = Some(ItemOutcome::Failed(ChannelError::new(
                    ErrorClass::Permanent,
                    code,
                    format!("quantity {} is out of Shopify's range", item.quantity),
                )));
                continue;
            }
            let entry = Entry {
                index,
                item: inventory_item,
                location,
                quantity: item.quantity,
                compare: item.believed.map(|b| b.clamp(-MAX_QUANTITY, MAX_QUANTITY)),
                idempotency_key: item.idempotency_key.clone(),
                reference: item.reference.clone(),
            };
            if entry.compare.is_none() && !self.change_from {
                unknown.push(entry);
            } else {
                ready.push(entry);
            }
        }

        // Before 2026-01 every quantity needs a compareQuantity (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>): read
        // the unknown ones first.
        if !unknown.is_empty() {
            let pairs: Vec<(String, String)> = unknown
                .iter()
                .map(|e| (e.item.clone(), e.location.clone()))
                .collect();
            match self.read_resolved(&pairs).await {
                Ok(levels) => {
                    for (mut entry, level) in unknown.into_iter().zip(levels) {
                        match level {
                            Ok(ChannelLevel {
                                quantity: Some(q), ..
                            }) => {
                                entry.compare = Some(q);
                                ready.push(entry);
                            }
                            Ok(_) => {
                                outcomes[entry.index] =
                                    Some(ItemOutcome::Failed(ChannelError::new(
                                        ErrorClass::Retryable,
                                        "bad_response",
                                        "no current level to compare with",
                                    )))
                            }
                            Err(e) => outcomes[entry.index] = Some(ItemOutcome::Failed(e)),
                        }
                    }
                }
                Err(e) => {
                    if ready.is_empty() {
                        return Err(e);
                    }
                    for entry in unknown {
                        outcomes[entry.index] = Some(ItemOutcome::Failed(e.clone()));
                    }
                }
            }
            ready.sort_by_key(|e| e.index);
        }

        let mut applied = 0;
        let mut rest = ready.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Entry> = rest.by_ref().take(self.items_per_call(set_cost)).collect();
            match self.push_chunk(chunk, &mut outcomes, applied).await {
                Ok(n) => applied += n,
                Err(e) => {
                    // Nothing applied anywhere: the whole call failed.
                    if applied == 0 {
                        return Err(e);
                    }
                    for slot in outcomes.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(ItemOutcome::Failed(e.clone()));
                    }
                    break;
                }
            }
        }

        Ok(crate::or_not_sent(outcomes))
    }

    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let mut out: Vec<Option<Result<ChannelLevel, ChannelError>>> = vec![None; listings.len()];
        let mut pairs = Vec::new();
        let mut positions = Vec::new();
        for (i, listing) in listings.iter().enumerate() {
            match item_and_location(&listing.external) {
                Ok(pair) => {
                    pairs.push(pair);
                    positions.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if !pairs.is_empty() {
            let levels = self.read_resolved(&pairs).await?;
            for (i, level) in positions.into_iter().zip(levels) {
                out[i] = Some(level);
            }
        }
        Ok(out
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    Err(ChannelError::new(
                        ErrorClass::Retryable,
                        "not_read",
                        "level was not read",
                    ))
                })
            })
            .collect())
    }

    fn bulk_read_from(&self) -> Option<usize> {
        Some(BULK_READ_FROM)
    }

    fn polls_orders(&self) -> bool {
        self.config.order_poll_interval.is_some()
    }

    /// The orders updated since the cursor (`orders.rs`): what lost
    /// webhooks would have said.
    async fn poll_orders(&self, cursor: Option<&str>) -> Result<OrderPoll, ChannelError> {
        match self.config.order_poll_interval {
            Some(interval) => self.poll(cursor, interval).await,
            None => Ok(crate::poll::idle(cursor)),
        }
    }

    fn listing_key(&self, external: &External) -> Option<String> {
        let (item, location) = item_and_location(external).ok()?;
        bulk::key_of(&item, &location)
    }

    async fn read_all(&self, progress: BulkProgress<'_>) -> Result<BulkRead, ChannelError> {
        self.bulk_read(progress).await
    }

    fn webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        self.verify_webhook(headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_year_month() {
        assert!(!uses_change_from("2025-01"));
        assert!(!uses_change_from("2025-10"));
        assert!(uses_change_from("2026-01"));
        assert!(uses_change_from("2026-04"));
        assert!(uses_change_from("unstable"));
        assert!(!uses_change_from("garbage"));
    }

    #[test]
    fn field_paths_name_the_quantity() {
        let ue = UserError::parse(&json!({
            "code": "COMPARE_QUANTITY_STALE",
            "field": ["input", "quantities", "3", "compareQuantity"],
            "message": "stale"
        }));
        assert_eq!(ue.position(), Some(3));
        assert!(ue.is_stale());
        let none = UserError::parse(
            &json!({"code": "INVALID_REASON", "field": ["input", "reason"], "message": "x"}),
        );
        assert_eq!(none.position(), None);
    }

    #[test]
    fn references_keep_their_scheme_or_become_gids() {
        assert!(has_scheme("stockd://ledger/42"));
        assert!(has_scheme("gid://stockd/Ledger/42"));
        assert!(!has_scheme("ledger-42"));
        assert!(!has_scheme("1:2"));
    }
}
