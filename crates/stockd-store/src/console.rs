//! Reads for the operator console, kept apart from the API's reads: variant
//! search (SKU prefix over the primary key, exact GTIN on its index, title
//! by trigram index — three characters or more — or by title prefix), a
//! SKU's newest ledger sequence numbers, its newest push attempts and open
//! returns, the ledger head (events/s), outbox health per channel and
//! filtered listing states (served by the partial index on lagging rows),
//! and oversell totals.

use crate::outbox::OutboxRow;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use stockd_core::{ChannelId, RmaId, Sku, Variant};

/// Which lagging listings a console page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaggingFilter {
    /// The channel lags the desired state (not dead-lettered).
    Lagging,
    /// Held back by the change budget.
    HeldByBudget,
    /// In the dead-letter queue.
    DeadLettered,
}

/// The outbox of one channel at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelHealth {
    pub channel: ChannelId,
    /// Listings whose channel lags (including dead-lettered ones).
    pub lagging: u64,
    /// Since when the oldest unsent update waits.
    pub oldest_unsent: Option<DateTime<Utc>>,
    /// Listings held by the change budget.
    pub held_by_budget: u64,
    pub dead_letters: u64,
}

/// Oversold order lines recorded by the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OversellTotals {
    pub lines: u64,
    pub units: i64,
}

/// The note the dispatcher stores on a listing the change budget holds.
pub const HELD_BY_BUDGET_NOTE: &str = "held by the change budget";

/// Console reads, on both stores.
#[async_trait]
pub trait ConsoleReads: Send + Sync {
    /// Variants whose SKU starts with `text`, whose GTIN is `text`, or whose
    /// title contains `text` (case-insensitive; a text shorter than
    /// `TITLE_TRIGRAM_MIN` characters matches title starts), in that order;
    /// at most `limit`.
    async fn search_variants(&self, text: &str, limit: u32) -> Result<Vec<Variant>, StoreError>;
    /// The sequence numbers of the newest `limit` ledger rows touching `sku`, newest first.
    async fn ledger_seqs_of(&self, sku: &Sku, limit: u32) -> Result<Vec<u64>, StoreError>;
    /// The newest ledger sequence number (0 when empty).
    async fn ledger_head(&self) -> Result<u64, StoreError>;
    /// Outbox health of each given channel.
    async fn channel_health(
        &self,
        channels: &[ChannelId],
    ) -> Result<Vec<ChannelHealth>, StoreError>;
    /// Lagging listing states of a channel matching `filter`, in SKU order after `after`.
    async fn lagging_listings(
        &self,
        channel: &ChannelId,
        filter: LaggingFilter,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    async fn oversell_totals(&self) -> Result<OversellTotals, StoreError>;
    /// The newest `limit` push attempts for `sku` (every channel), newest first.
    async fn recent_pushes_of(
        &self,
        sku: &Sku,
        limit: u32,
    ) -> Result<Vec<crate::kpis::PushAttempt>, StoreError>;
    /// RMAs with an open line of `sku` (received, not all verified), in id order.
    async fn open_returns_of(&self, sku: &Sku, limit: u32) -> Result<Vec<RmaId>, StoreError>;
}

/// Title text this long or longer is searched as a substring (trigram
/// index); shorter text has no trigram and matches title starts.
pub const TITLE_TRIGRAM_MIN: usize = 3;

/// Whether `text` is searched in titles by trigram.
pub(crate) fn title_by_trigram(text: &str) -> bool {
    text.chars().count() >= TITLE_TRIGRAM_MIN
}

/// An FTS5 phrase holding `text` literally.
pub(crate) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `text` with LIKE's wildcards escaped (escape character `\`).
pub(crate) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The smallest string above every string starting with `prefix` (in byte order).
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Whether `text` may be a GTIN (8 to 14 digits).
pub(crate) fn may_be_gtin(text: &str) -> bool {
    (8..=14).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// Appends `more` to `found`, skipping SKUs already there, up to `limit`.
pub(crate) fn merge(found: &mut Vec<Variant>, more: Vec<Variant>, limit: usize) {
    let mut more = more;
    // Title matches arrive in index order; a person reads them by SKU.
    more.sort_by(|a, b| a.sku.cmp(&b.sku));
    for v in more {
        if found.len() >= limit {
            return;
        }
        if !found.iter().any(|f| f.sku == v.sku) {
            found.push(v);
        }
    }
}

pub(crate) const SKU_PREFIX_SQL: &str = "SELECT sku, title, product_id, gtin FROM variants \
     WHERE sku >= ?1 AND sku < ?2 ORDER BY sku LIMIT ?3";
pub(crate) const GTIN_SQL: &str =
    "SELECT sku, title, product_id, gtin FROM variants WHERE gtin = ?1 ORDER BY sku LIMIT ?2";
/// Titles containing a text (≥ 3 characters), by the FTS5 trigram index, in
/// index order (no sort over every match): `?1` an FTS5 phrase, `?2` limit.
pub(crate) const SQLITE_TITLE_TRIGRAM_SQL: &str =
    "SELECT variants.sku, variants.title, variants.product_id, variants.gtin \
     FROM variants_title JOIN variants ON variants.rowid = variants_title.rowid \
     WHERE variants_title MATCH ?1 ORDER BY variants_title.rowid LIMIT ?2";
/// Titles starting with a (lowercase) text: `?1` start, `?2` end, `?3` limit.
pub(crate) const SQLITE_TITLE_PREFIX_SQL: &str = "SELECT sku, title, product_id, gtin \
     FROM variants WHERE lower(title) >= ?1 AND lower(title) < ?2 ORDER BY lower(title) LIMIT ?3";
/// Titles containing a text, by the pg_trgm index: `$1` a LIKE pattern on
/// the lowercase title, `$2` limit. Unordered, so it stops at `limit`
/// matches (the caller orders the few it gets).
pub(crate) const PG_TITLE_TRIGRAM_SQL: &str = "SELECT sku, title, product_id, gtin \
     FROM variants WHERE lower(title) LIKE $1 LIMIT $2";
/// Titles starting with a (lowercase) text, in byte order.
pub(crate) const PG_TITLE_PREFIX_SQL: &str = "SELECT sku, title, product_id, gtin \
     FROM variants WHERE lower(title) COLLATE \"C\" >= $1 AND lower(title) COLLATE \"C\" < $2 \
     ORDER BY lower(title) COLLATE \"C\" LIMIT $3";
/// Whether the trigram index exists (pg_trgm was available at migration).
pub(crate) const PG_HAS_TRIGRAM_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'variants_by_title_trgm')";

/// Newest push attempts of one SKU (index `push_audit_sku`).
pub(crate) fn recent_pushes_sql() -> String {
    format!(
        "SELECT {} FROM push_audit WHERE sku = ?1 ORDER BY id DESC LIMIT ?2",
        crate::kpis::ATTEMPT_COLUMNS
    )
}
/// RMAs with an open line of one SKU (partial index `returns_open_by_sku`).
pub(crate) const OPEN_RETURNS_OF_SQL: &str = "SELECT DISTINCT rma_id FROM returns \
     WHERE sku = ?1 AND received_qty > sellable_qty + unsellable_qty ORDER BY rma_id LIMIT ?2";
pub(crate) const LEDGER_SEQS_SQL: &str =
    "SELECT seq FROM ledger_skus WHERE sku = ?1 ORDER BY seq DESC LIMIT ?2";
pub(crate) const LEDGER_HEAD_SQL: &str = "SELECT COALESCE(MAX(seq), 0) FROM ledger";
pub(crate) const HEALTH_SQL: &str = "SELECT COUNT(*), MIN(dirty_since_ms), \
     CAST(COALESCE(SUM(CASE WHEN last_error = ?2 AND parked = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
     FROM listing_state WHERE channel = ?1 AND dirty_since_ms IS NOT NULL";
pub(crate) const DEAD_COUNT_SQL: &str = "SELECT COUNT(*) FROM dead_letters WHERE channel = ?1";
pub(crate) const OVERSELL_SQL: &str =
    "SELECT COUNT(*), CAST(COALESCE(SUM(shortfall_qty), 0) AS BIGINT) FROM oversells";

/// Lagging rows of one channel after a SKU: `?1` channel, `?2` after, `?3` limit, `?4` note.
pub(crate) fn lagging_sql(filter: LaggingFilter) -> String {
    let condition = match filter {
        LaggingFilter::Lagging => "parked = 0",
        LaggingFilter::HeldByBudget => "parked = 0 AND last_error = ?4",
        LaggingFilter::DeadLettered => "parked <> 0",
    };
    format!(
        "SELECT {} FROM listing_state WHERE channel = ?1 AND dirty_since_ms IS NOT NULL \
         AND sku > ?2 AND {condition} ORDER BY sku LIMIT ?3",
        crate::outbox::ROW_COLUMNS
    )
}

/// Milliseconds since the epoch → time.
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {ms} ms")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_and_prefix_helpers() {
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
        assert!(prefix_end("AB").as_str() > "ABZZZ");
        assert!(prefix_end("AB").as_str() < "AC");
        assert!(may_be_gtin("4006381333931"));
        assert!(!may_be_gtin("40063"));
        assert!(!may_be_gtin("SKU-12345678"));
        assert_eq!(fts_phrase("a \"b\" c"), "\"a \"\"b\"\" c\"");
        assert!(title_by_trigram("oak"));
        assert!(title_by_trigram("éé€"));
        assert!(!title_by_trigram("ok"));
    }
}
