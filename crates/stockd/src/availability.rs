//! Whole-catalog passes over the computed availability (rules previews and
//! diffs). The computation itself lives in `stockd_store::availability`, so
//! the event writer can persist desired states in its own transaction.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use stockd_core::Sku;
pub use stockd_store::availability::*;
use stockd_store::{Store, StoreError};

/// SKUs per page of a whole-catalog pass.
pub const PASS_PAGE: u32 = 1_000;

/// One page of a pass: its stock and the last SKU it holds (`None`: the last page).
struct Page {
    data: StockData,
    next_after: Option<Sku>,
}

async fn read_page(
    store: &dyn Store,
    setup: &Setup,
    rule_sets: &[&RuleSet],
    after: Option<&Sku>,
    now: DateTime<Utc>,
) -> Result<Option<Page>, StoreError> {
    let skus = store.listed_skus(after, PASS_PAGE).await?;
    if skus.is_empty() {
        return Ok(None);
    }
    let data = StockData::load(store, setup, &skus, rule_sets, now).await?;
    let next_after = (skus.len() == PASS_PAGE as usize)
        .then(|| skus.last().cloned())
        .flatten();
    Ok(Some(Page { data, next_after }))
}

/// Computes every listed SKU under two rule sets, page by page, and hands
/// each page's two results to `visit`, in SKU order (states only: no
/// explain trails). A pipeline: a page's
/// two computations run on two blocking threads while the next page is read
/// (on a reader's blocking thread), so a pass keeps both cores busy whether
/// reading or computing takes longer.
pub async fn compare_all(
    store: &dyn Store,
    setup: Arc<Setup>,
    before: RuleSet,
    after: RuleSet,
    now: DateTime<Utc>,
    mut visit: impl FnMut(&Computed, &Computed),
) -> Result<(), StoreError> {
    let (before, after) = (Arc::new(before), Arc::new(after));
    let mut computing: Option<(Computing, Computing)> = None;
    let mut next_after: Option<Sku> = None;
    let mut first = true;
    loop {
        let page = if first || next_after.is_some() {
            let rule_sets = [&*before, &*after];
            read_page(store, &setup, &rule_sets, next_after.as_ref(), now).await?
        } else {
            None
        };
        first = false;
        if let Some((old, new)) = computing.take() {
            visit(&finished(old).await?, &finished(new).await?);
        }
        let Some(Page {
            data,
            next_after: page_after,
        }) = page
        else {
            return Ok(());
        };
        next_after = page_after;
        let data = Arc::new(data);
        computing = Some((
            start_compute(&setup, &data, &before, now),
            start_compute(&setup, &data, &after, now),
        ));
    }
}

type Computing = tokio::task::JoinHandle<Computed>;

fn start_compute(
    setup: &Arc<Setup>,
    data: &Arc<StockData>,
    rules: &Arc<RuleSet>,
    now: DateTime<Utc>,
) -> Computing {
    let (setup, data, rules) = (setup.clone(), data.clone(), rules.clone());
    tokio::task::spawn_blocking(move || {
        data.compute_states(&setup, &rules.rules, now.date_naive(), now)
    })
}

async fn finished(computing: Computing) -> Result<Computed, StoreError> {
    computing
        .await
        .map_err(|e| StoreError::Database(format!("a whole-catalog computation stopped: {e}")))
}
