//! The publish outbox: stock changes that stockd publishes to other systems
//! (`[outbound.nats]`). The writer marks every SKU a group touched in the
//! group's own transaction (`mark_changed`), so a committed change is never
//! lost; a publisher reads the marked SKUs (`PublishStore`), publishes their
//! current state and records the generation it published.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use stockd_core::availability::ListingState;
use stockd_core::{ChannelId, Sku};

/// A SKU whose stock changed since it was last published.
#[derive(Debug, Clone, PartialEq)]
pub struct StockChange {
    pub sku: Sku,
    /// How many committed groups have touched the SKU; grows by one each time.
    pub gen: u64,
    /// The ledger sequence of the latest change.
    pub caused_seq: u64,
    pub changed_at: DateTime<Utc>,
    /// What each channel may show now (its desired state), by channel.
    pub channels: Vec<(ChannelId, ListingState)>,
}

/// The writer's side: inside the group's transaction.
#[allow(async_fn_in_trait)]
pub(crate) trait StockChanges {
    /// Marks each SKU changed by the ledger entry `seq` at `at`.
    async fn mark_stock_changed(
        &mut self,
        changed: &[(Sku, u64)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// The publisher's side.
#[async_trait]
pub trait PublishStore: Send + Sync {
    /// SKUs changed since they were last published, oldest change first.
    async fn stock_changes_due(&self, limit: u32) -> Result<Vec<StockChange>, StoreError>;
    /// Records that `gen` of `sku` was published (a lower one never overwrites).
    async fn stock_published(&self, published: Vec<(Sku, u64)>) -> Result<(), StoreError>;
}

/// The latest ledger entry of every touched SKU (the writer's step).
pub(crate) async fn mark_changed<B: StockChanges>(
    backend: &mut B,
    touched: &BTreeMap<Sku, (u64, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if touched.is_empty() {
        return Ok(());
    }
    let changed: Vec<(Sku, u64)> = touched
        .iter()
        .map(|(sku, (seq, _))| (sku.clone(), *seq))
        .collect();
    backend.mark_stock_changed(&changed, now).await
}

pub(crate) const MARK: &str = "INSERT INTO stock_publish (sku, gen, caused_seq, changed_at_ms)
    VALUES (?1, 1, ?2, ?3)
    ON CONFLICT (sku) DO UPDATE SET gen = stock_publish.gen + 1,
        caused_seq = excluded.caused_seq, changed_at_ms = excluded.changed_at_ms";
pub(crate) const DUE: &str = "SELECT sku, gen, caused_seq, changed_at_ms FROM stock_publish
    WHERE gen > published_gen ORDER BY changed_at_ms, sku LIMIT ?1";
pub(crate) const PUBLISHED: &str =
    "UPDATE stock_publish SET published_gen = ?2 WHERE sku = ?1 AND published_gen < ?2";
