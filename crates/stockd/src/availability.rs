//! Whole-catalog passes over the computed availability (rules previews and
//! diffs). The computation itself lives in `stockd_store::availability`, so
//! the event writer can persist desired states in its own transaction.

use chrono::{DateTime, Utc};
use stockd_core::Sku;
pub use stockd_store::availability::*;
use stockd_store::{Store, StoreError};

/// SKUs per page of a whole-catalog pass.
pub const PASS_PAGE: u32 = 1_000;

/// Computes every listed SKU under two rule sets, page by page, and hands
/// each page's two results to `visit`.
pub async fn compare_all(
    store: &dyn Store,
    setup: &Setup,
    before: &RuleSet,
    after: &RuleSet,
    now: DateTime<Utc>,
    mut visit: impl FnMut(&Computed, &Computed),
) -> Result<(), StoreError> {
    let mut cursor: Option<Sku> = None;
    loop {
        let skus = store.listed_skus(cursor.as_ref(), PASS_PAGE).await?;
        if skus.is_empty() {
            return Ok(());
        }
        let data = StockData::load(store, setup, &skus, &[before, after], now).await?;
        let today = now.date_naive();
        let old = data.compute(setup, &before.rules, today, now);
        let new = data.compute(setup, &after.rules, today, now);
        visit(&old, &new);
        if skus.len() < PASS_PAGE as usize {
            return Ok(());
        }
        cursor = skus.last().cloned();
    }
}
