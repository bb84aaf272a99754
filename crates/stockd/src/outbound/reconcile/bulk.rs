//! The bulk path of a run: channels with a bulk read (an export, a report,
//! a bulk operation) that have at least as many listings as their connector
//! asks for ([`Connector::bulk_read_from`]) are read once, whole, with
//! [`Connector::read_all`]; every stored listing is then compared with what
//! the read showed for its key ([`Connector::listing_key`]).
//!
//! - Race freedom: the outbox rows of every remaining listing are read
//!   before the bulk read starts and each page's rows again after it. A
//!   listing whose row changed in between, that was lagging, or whose push
//!   was acknowledged after [`BulkRead::started_at`] is `pending`. A listing
//!   that differs is confirmed with `read_levels` after the confirmation
//!   delay, as on the paged path (exports are not always current).
//! - A stored listing the read lacks is `missing_on_channel`; a listing the
//!   read shows that matches no stored listing is `unknown_to_stockd`
//!   (reported with the last page, never touched).
//! - Pages are committed as on the paged path (the cursor moves per page);
//!   the bulk read's requests count with the first page. A run stopped
//!   mid-way reads the channel again on resume and continues after the
//!   cursor; the unknown listings are committed with the last page, so a
//!   run that resumes with nothing left has already reported them.

use super::{Check, Reconciler, READ_ATTEMPTS};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;
use stockd_channels::{BulkRead, ChannelError, ChannelLevel, ErrorClass, ShownListing};
use stockd_core::Sku;
use stockd_store::outbox::OutboxRow;
use stockd_store::reconcile::{DriftClass, PageProgress, RunItem, RunRecord};
use stockd_store::ListingRecord;
use tokio::sync::watch;

/// Rows read per store call while taking the snapshot before the read.
const SNAPSHOT_CHUNK: usize = 1_000;

impl Reconciler {
    /// Listings a running bulk read of run `id` has delivered so far, when
    /// this instance is reading.
    pub fn bulk_read_progress(&self, id: i64) -> Option<u64> {
        super::lock(&self.bulk_reads).get(&id).copied()
    }

    pub(super) async fn work_bulk(
        &self,
        run: &RunRecord,
        check: &Check<'_>,
        listings: &[ListingRecord],
        remaining: &[&ListingRecord],
        stopped: watch::Receiver<bool>,
    ) -> Result<(), String> {
        // Rows before the channel's read.
        let mut before: BTreeMap<Sku, OutboxRow> = BTreeMap::new();
        for chunk in remaining.chunks(SNAPSHOT_CHUNK) {
            before.extend(check.rows(chunk).await?);
        }
        super::lock(&self.bulk_reads).insert(run.id, 0);
        let read = self.read_all(run.id, check).await;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                super::lock(&self.bulk_reads).remove(&run.id);
                return Err(e);
            }
        };
        let shown: HashMap<&str, &ShownListing> =
            read.listings.iter().map(|s| (s.key.as_str(), s)).collect();
        let mut requests = read.channel_requests;
        let pages: Vec<&[&ListingRecord]> =
            remaining.chunks(self.config.page_size.max(1)).collect();
        let last = pages.len().saturating_sub(1);
        for (i, page) in pages.into_iter().enumerate() {
            if *stopped.borrow() {
                break;
            }
            let after = check.rows(page).await?;
            let levels: Vec<Result<ChannelLevel, ChannelError>> =
                page.iter().map(|l| shown_level(check, &shown, l)).collect();
            let mut progress = check
                .classify(
                    page,
                    &before,
                    &after,
                    &levels,
                    Some(read.started_at),
                    std::mem::take(&mut requests),
                )
                .await?;
            if i == last {
                unknown_listings(check, listings, &read, &mut progress);
            }
            self.commit(run, check, progress).await?;
        }
        super::lock(&self.bulk_reads).remove(&run.id);
        Ok(())
    }

    /// The connector's bulk read, retried on transient failures; its
    /// progress goes to `bulk_reads`.
    async fn read_all(&self, id: i64, check: &Check<'_>) -> Result<BulkRead, String> {
        let report = |n: u64| {
            super::lock(&self.bulk_reads).insert(id, n);
        };
        let mut attempt = 0;
        let mut requests = 0;
        loop {
            attempt += 1;
            check.yield_to_protective().await;
            match check.connector.read_all(&report).await {
                Ok(mut read) => {
                    read.channel_requests += requests;
                    return Ok(read);
                }
                Err(e) if attempt < READ_ATTEMPTS && e.class != ErrorClass::Permanent => {
                    // A failed read still sent at least its first request.
                    requests += 1;
                    let wait = e
                        .retry_after
                        .unwrap_or(Duration::from_millis(200 << attempt.min(6)));
                    tracing::warn!(channel = %check.channel, error = %e, "bulk read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(format!("reading the channel in bulk failed: {e}")),
            }
        }
    }
}

/// What the bulk read showed for a stored listing: its level, `not_found`
/// when the read lacks it, an error when its key cannot be derived.
fn shown_level(
    check: &Check<'_>,
    shown: &HashMap<&str, &ShownListing>,
    listing: &ListingRecord,
) -> Result<ChannelLevel, ChannelError> {
    let Some(key) = check.connector.listing_key(&listing.external) else {
        return Err(ChannelError::new(
            ErrorClass::Permanent,
            "no_channel_key",
            "the listing's external ids name no key of the channel's bulk read",
        ));
    };
    match shown.get(key.as_str()) {
        Some(s) => Ok(s.level.clone()),
        None => Err(ChannelError::new(
            ErrorClass::Permanent,
            "not_found",
            format!("the channel's bulk read does not show {key}"),
        )),
    }
}

/// Adds every listing of the read that matches no stored listing as
/// `unknown_to_stockd`. The item is named by the channel's SKU when that is
/// unambiguous, by the channel's key otherwise.
fn unknown_listings(
    check: &Check<'_>,
    listings: &[ListingRecord],
    read: &BulkRead,
    progress: &mut PageProgress,
) {
    let known: HashSet<String> = listings
        .iter()
        .filter_map(|l| check.connector.listing_key(&l.external))
        .collect();
    let stored_skus: HashSet<&str> = listings.iter().map(|l| l.sku.as_str()).collect();
    let unknown: Vec<&ShownListing> = read
        .listings
        .iter()
        .filter(|s| !known.contains(&s.key))
        .collect();
    let mut sku_uses: HashMap<&str, usize> = HashMap::new();
    for s in &unknown {
        if let Some(sku) = s.channel_sku.as_deref() {
            *sku_uses.entry(sku).or_default() += 1;
        }
    }
    let mut names: BTreeSet<String> = BTreeSet::new();
    for s in unknown {
        let name = match s.channel_sku.as_deref() {
            Some(sku) if sku_uses.get(sku) == Some(&1) && !stored_skus.contains(sku) => {
                sku.to_string()
            }
            _ => s.key.clone(),
        };
        if !names.insert(name.clone()) {
            continue;
        }
        progress.counts.add(DriftClass::UnknownToStockd, 1);
        progress.items.push(RunItem {
            sku: name,
            class: DriftClass::UnknownToStockd,
            expected: None,
            observed: Some(serde_json::json!({
                "key": s.key,
                "channel_sku": s.channel_sku,
                "quantity": s.level.quantity,
                "availability": s.level.availability,
            })),
            fixed: false,
            note: Some(format!("on the channel as {}", s.key)),
        });
    }
}
