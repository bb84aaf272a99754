//! Persisted delivery figures: the push audit trail (every push attempt,
//! what was sent and what the channel said) and per-channel, per-day sums —
//! order lines, pushes, failures, dead letters and an update-latency
//! histogram with fixed buckets, so percentiles over any range of days come
//! from stored counts, the same on every instance and after a restart.
//! Oversold lines come from the ledger's oversell rows.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use stockd_core::{ChannelId, Sku};

/// Upper bounds (ms, inclusive) of the latency buckets; a last bucket
/// holds everything slower.
pub const LATENCY_BUCKETS_MS: [f64; 14] = [
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    3_600_000.0,
];

/// The bucket a latency falls in (`LATENCY_BUCKETS_MS.len()`: slower).
pub fn latency_bucket(ms: f64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// The `p`-th percentile of a bucket histogram: the upper bound of the
/// bucket where the cumulative count reaches `p` % (an upper estimate);
/// `None` when empty.
pub fn histogram_percentile(counts: &[u64], p: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    None
}

/// Cancel reasons that mean "no stock to fulfil" (the cancel ratio).
pub const STOCK_CANCEL_REASONS: [&str; 4] =
    ["out_of_stock", "no_stock", "insufficient_stock", "oversold"];

/// One push attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushAttempt {
    /// Assigned by the store (0 when recording).
    pub id: i64,
    pub at: DateTime<Utc>,
    pub channel: ChannelId,
    pub sku: Sku,
    pub desired_gen: u64,
    pub rules_version: Option<u32>,
    /// The ledger sequence of the event that caused the state sent.
    pub caused_seq: Option<u64>,
    /// What was sent (quantity, availability, eta, believed count).
    pub sent: serde_json::Value,
    /// `applied`, `retryable`, `rate_limited`, `stale`, `permanent`.
    pub outcome: String,
    /// The channel's count as it answered.
    pub channel_quantity: Option<i64>,
    pub code: Option<String>,
    pub message: Option<String>,
    /// Event received → channel acknowledged (applied attempts only).
    pub latency_ms: Option<f64>,
    /// The attempt moved the update to the dead-letter queue.
    #[serde(skip)]
    pub dead_lettered: bool,
}

/// Sums to add to one channel's day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayCounts {
    pub order_lines: u64,
    /// Order lines cancelled for lack of stock (cancel events whose reason
    /// is one of [`STOCK_CANCEL_REASONS`]).
    pub stock_cancels: u64,
    pub pushes: u64,
    pub failures: u64,
    pub dead_letters: u64,
    /// Counts per latency bucket (`LATENCY_BUCKETS_MS.len() + 1`).
    pub latency: Vec<u64>,
}

impl DayCounts {
    pub fn add(&mut self, other: &DayCounts) {
        self.order_lines += other.order_lines;
        self.stock_cancels += other.stock_cancels;
        self.pushes += other.pushes;
        self.failures += other.failures;
        self.dead_letters += other.dead_letters;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }
}

/// One channel's day, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayFigures {
    pub channel: ChannelId,
    pub day: NaiveDate,
    pub counts: DayCounts,
    /// Order lines that could not be covered by stock when they arrived.
    pub oversold_lines: u64,
}

/// Storage of the audit trail and the daily figures.
#[async_trait]
pub trait KpiStore: Send + Sync {
    /// Records push attempts and adds to daily sums, in one transaction.
    async fn kpi_record(
        &self,
        attempts: Vec<PushAttempt>,
        days: Vec<(ChannelId, NaiveDate, DayCounts)>,
    ) -> Result<(), StoreError>;
    /// Push attempts with an id above `after`, oldest first, optionally of
    /// one SKU and/or channel.
    async fn push_attempts(
        &self,
        sku: Option<&Sku>,
        channel: Option<&ChannelId>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<PushAttempt>, StoreError>;
    /// Deletes at most `limit` attempts older than `before`; returns how many.
    async fn push_attempts_prune(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// The last ledger seq the daily figures have counted.
    async fn kpi_ledger_cursor(&self) -> Result<u64, StoreError>;
    /// Adds what ledger entries `(from, to]` contributed and moves the
    /// cursor, in one transaction, only if the cursor is still at `from`
    /// (another instance may have counted them); returns whether it did.
    async fn kpi_follow_ledger(
        &self,
        from: u64,
        to: u64,
        days: Vec<(ChannelId, NaiveDate, DayCounts)>,
    ) -> Result<bool, StoreError>;
    /// Daily figures of days `from..=to`, optionally of one channel.
    async fn kpi_days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        channel: Option<&ChannelId>,
    ) -> Result<Vec<DayFigures>, StoreError>;
}

// ----- SQL shared by both dialects ------------------------------------------

pub(crate) const INSERT_ATTEMPT: &str = "INSERT INTO push_audit (at_ms, channel, sku, \
     desired_gen, rules_version, caused_seq, sent, outcome, channel_quantity, code, message, \
     latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

pub(crate) const ADD_DAY: &str = "INSERT INTO kpi_daily (channel, day, order_lines, pushes, \
     failures, dead_letters, stock_cancels) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (channel, day) DO UPDATE \
     SET order_lines = kpi_daily.order_lines + excluded.order_lines, \
     stock_cancels = kpi_daily.stock_cancels + excluded.stock_cancels, \
     pushes = kpi_daily.pushes + excluded.pushes, \
     failures = kpi_daily.failures + excluded.failures, \
     dead_letters = kpi_daily.dead_letters + excluded.dead_letters";

pub(crate) const ADD_LATENCY: &str = "INSERT INTO kpi_latency (channel, day, bucket, count) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (channel, day, bucket) DO UPDATE \
     SET count = kpi_latency.count + excluded.count";

pub(crate) const CURSOR: &str = "SELECT seq FROM kpi_cursor WHERE name = 'ledger'";

pub(crate) const MOVE_CURSOR: &str =
    "UPDATE kpi_cursor SET seq = ?2 WHERE name = 'ledger' AND seq = ?1";

pub(crate) const ATTEMPT_COLUMNS: &str = "id, at_ms, channel, sku, desired_gen, rules_version, \
     caused_seq, sent, outcome, channel_quantity, code, message, latency_ms";

/// `?1` after, `?2` limit, then `?3` sku and/or `?4` channel.
pub(crate) fn attempts_sql(sku: bool, channel: bool) -> String {
    let mut sql = format!("SELECT {ATTEMPT_COLUMNS} FROM push_audit WHERE id > ?1");
    if sku {
        sql.push_str(" AND sku = ?3");
    }
    if channel {
        sql.push_str(if sku {
            " AND channel = ?4"
        } else {
            " AND channel = ?3"
        });
    }
    sql.push_str(" ORDER BY id LIMIT ?2");
    sql
}

pub(crate) const PRUNE: &str = "DELETE FROM push_audit WHERE id IN \
     (SELECT id FROM push_audit WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)";

/// `?1` from, `?2` to (days as text), optional `?3` channel.
pub(crate) fn days_sql(channel: bool) -> String {
    let mut sql = String::from(
        "SELECT channel, day, order_lines, pushes, failures, dead_letters, stock_cancels \
         FROM kpi_daily \
         WHERE day >= ?1 AND day <= ?2",
    );
    if channel {
        sql.push_str(" AND channel = ?3");
    }
    sql
}

pub(crate) fn latency_sql(channel: bool) -> String {
    let mut sql = String::from(
        "SELECT channel, day, bucket, count FROM kpi_latency WHERE day >= ?1 AND day <= ?2",
    );
    if channel {
        sql.push_str(" AND channel = ?3");
    }
    sql
}

pub(crate) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

pub(crate) fn parse_day(raw: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(crate::rows::corrupt)
}

/// Daily rows assembled from the three reads.
pub(crate) fn assemble(
    days: Vec<(String, String, [i64; 5])>,
    latency: Vec<(String, String, i64, i64)>,
    oversold: Vec<(String, String, i64)>,
) -> Result<Vec<DayFigures>, StoreError> {
    use std::collections::BTreeMap;
    let mut map: BTreeMap<(String, String), DayFigures> = BTreeMap::new();
    let mut entry = |channel: &str, day: &str| -> Result<(String, String), StoreError> {
        let key = (channel.to_string(), day.to_string());
        if !map.contains_key(&key) {
            map.insert(
                key.clone(),
                DayFigures {
                    channel: crate::rows::parse_id(channel.to_string(), ChannelId::parse)?,
                    day: parse_day(day)?,
                    counts: DayCounts {
                        latency: vec![0; LATENCY_BUCKETS_MS.len() + 1],
                        ..DayCounts::default()
                    },
                    oversold_lines: 0,
                },
            );
        }
        Ok(key)
    };
    let mut keys = Vec::new();
    for (channel, day, n) in &days {
        keys.push((entry(channel, day)?, Some(*n), None, None));
    }
    for (channel, day, bucket, count) in &latency {
        keys.push((entry(channel, day)?, None, Some((*bucket, *count)), None));
    }
    for (channel, day, lines) in &oversold {
        if channel.is_empty() {
            continue;
        }
        keys.push((entry(channel, day)?, None, None, Some(*lines)));
    }
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    for (key, n, bucket, oversold) in keys {
        let Some(f) = map.get_mut(&key) else { continue };
        if let Some(n) = n {
            f.counts.order_lines += u(n[0]);
            f.counts.pushes += u(n[1]);
            f.counts.failures += u(n[2]);
            f.counts.dead_letters += u(n[3]);
            f.counts.stock_cancels += u(n[4]);
        }
        if let Some((b, c)) = bucket {
            if let Some(slot) = usize::try_from(b)
                .ok()
                .and_then(|b| f.counts.latency.get_mut(b))
            {
                *slot += u(c);
            }
        }
        if let Some(lines) = oversold {
            f.oversold_lines += u(lines);
        }
    }
    Ok(map.into_values().collect())
}

/// The raw columns of an attempt, in `ATTEMPT_COLUMNS` order.
pub(crate) struct RawAttempt {
    pub id: i64,
    pub at_ms: i64,
    pub channel: String,
    pub sku: String,
    pub desired_gen: i64,
    pub rules_version: Option<i64>,
    pub caused_seq: Option<i64>,
    pub sent: String,
    pub outcome: String,
    pub channel_quantity: Option<i64>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub latency_ms: Option<f64>,
}

impl RawAttempt {
    pub(crate) fn into_attempt(self) -> Result<PushAttempt, StoreError> {
        Ok(PushAttempt {
            id: self.id,
            at: crate::outbox::from_ms(self.at_ms),
            channel: crate::rows::parse_id(self.channel, ChannelId::parse)?,
            sku: crate::rows::parse_id(self.sku, Sku::parse)?,
            desired_gen: u64::try_from(self.desired_gen).unwrap_or(0),
            rules_version: self.rules_version.and_then(|v| u32::try_from(v).ok()),
            caused_seq: self.caused_seq.and_then(|v| u64::try_from(v).ok()),
            sent: serde_json::from_str(&self.sent)?,
            outcome: self.outcome,
            channel_quantity: self.channel_quantity,
            code: self.code,
            message: self.message,
            latency_ms: self.latency_ms,
            dead_lettered: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(latency_bucket(0.0), 0);
        assert_eq!(latency_bucket(10.0), 0);
        assert_eq!(latency_bucket(10.5), 1);
        assert_eq!(latency_bucket(1e9), LATENCY_BUCKETS_MS.len());
        let mut counts = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        counts[latency_bucket(20.0)] = 90;
        counts[latency_bucket(4_000.0)] = 9;
        counts[latency_bucket(20_000.0)] = 1;
        assert_eq!(histogram_percentile(&counts, 50.0), Some(25.0));
        assert_eq!(histogram_percentile(&counts, 95.0), Some(5_000.0));
        assert_eq!(histogram_percentile(&counts, 99.0), Some(5_000.0));
        assert_eq!(histogram_percentile(&counts, 100.0), Some(30_000.0));
        assert_eq!(histogram_percentile(&[0, 0], 50.0), None);
    }
}
