//! Inbound bookkeeping: messages from the bus that can never apply (kept,
//! with their reason, origin and body, until an operator discards them) and
//! supplier feed runs. These rows never touch quantities, so they are written
//! on pooled connections, outside the event writer.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A message that was terminated on the bus because it can never apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedMessage {
    /// Where it came from (`nats`).
    pub source: String,
    pub stream: String,
    /// The stream sequence of the message (unique per stream).
    pub stream_seq: u64,
    pub subject: String,
    /// A stable machine-readable code (`malformed_json`, `invalid_event`, …).
    pub code: String,
    pub reason: String,
    /// The body as received (invalid UTF-8 replaced).
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// A kept rejected message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedRow {
    pub id: i64,
    #[serde(flatten)]
    pub message: RejectedMessage,
}

/// How a feed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedRunStatus {
    /// Good rows applied (bad rows, if any, reported).
    Applied,
    /// Refused whole (e.g. it would drop too many SKUs); nothing applied.
    Refused,
    /// The source could not be read or storage failed; nothing applied.
    Failed,
}

impl FeedRunStatus {
    fn as_str(self) -> &'static str {
        match self {
            FeedRunStatus::Applied => "applied",
            FeedRunStatus::Refused => "refused",
            FeedRunStatus::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<FeedRunStatus, StoreError> {
        match raw {
            "applied" => Ok(FeedRunStatus::Applied),
            "refused" => Ok(FeedRunStatus::Refused),
            "failed" => Ok(FeedRunStatus::Failed),
            other => Err(StoreError::Corrupt(format!("feed run status {other:?}"))),
        }
    }
}

/// One run of a supplier feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedRun {
    pub feed: String,
    /// The file or URL read.
    pub source: String,
    pub status: FeedRunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub rows_total: u64,
    /// Rows whose event applied now.
    pub rows_applied: u64,
    /// Rows whose event had applied before (a re-import).
    pub rows_duplicate: u64,
    pub rows_bad: u64,
    /// Distinct supplier SKUs in the run's good rows.
    pub skus: u64,
    pub error: Option<String>,
    /// The bad rows (line, column, reason), at most a few hundred.
    pub problems: serde_json::Value,
}

/// A stored feed run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedRunRow {
    pub id: i64,
    #[serde(flatten)]
    pub run: FeedRun,
}

#[async_trait]
pub trait InboundStore: Send + Sync {
    /// Keeps a rejected message; a second record of the same stream sequence
    /// (a redelivery) keeps the first. Returns its id.
    async fn record_rejected(&self, message: RejectedMessage) -> Result<i64, StoreError>;
    /// Rejected messages in id order, after `after_id`.
    async fn rejected(&self, after_id: i64, limit: u32) -> Result<Vec<RejectedRow>, StoreError>;
    /// Drops a rejected message; false when absent.
    async fn discard_rejected(&self, id: i64) -> Result<bool, StoreError>;
    async fn record_feed_run(&self, run: FeedRun) -> Result<i64, StoreError>;
    /// Runs of one feed, newest first.
    async fn feed_runs(&self, feed: &str, limit: u32) -> Result<Vec<FeedRunRow>, StoreError>;
    /// The newest run of `feed` that applied.
    async fn last_applied_feed_run(&self, feed: &str) -> Result<Option<FeedRunRow>, StoreError>;
}

/// The SQL of both adapters, with `?N` placeholders (PostgreSQL's `$N`
/// after `dialect`).
pub(crate) const INSERT_REJECTED: &str = "INSERT INTO inbound_rejected
    (source, stream, stream_seq, subject, code, reason, body, received_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (source, stream, stream_seq) DO NOTHING";
pub(crate) const REJECTED_ID: &str =
    "SELECT id FROM inbound_rejected WHERE source = ?1 AND stream = ?2 AND stream_seq = ?3";
pub(crate) const SELECT_REJECTED: &str = "SELECT id, source, stream, stream_seq, subject, code,
    reason, body, received_at_ms FROM inbound_rejected WHERE id > ?1 ORDER BY id LIMIT ?2";
pub(crate) const DELETE_REJECTED: &str = "DELETE FROM inbound_rejected WHERE id = ?1";
pub(crate) const INSERT_FEED_RUN: &str = "INSERT INTO feed_runs
    (feed, source, status, started_at_ms, finished_at_ms, rows_total, rows_applied,
     rows_duplicate, rows_bad, skus, error, problems)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id";
const FEED_RUN_COLUMNS: &str = "id, feed, source, status, started_at_ms, finished_at_ms,
    rows_total, rows_applied, rows_duplicate, rows_bad, skus, error, problems";

pub(crate) fn select_feed_runs() -> String {
    format!("SELECT {FEED_RUN_COLUMNS} FROM feed_runs WHERE feed = ?1 ORDER BY id DESC LIMIT ?2")
}

pub(crate) fn select_last_applied() -> String {
    format!(
        "SELECT {FEED_RUN_COLUMNS} FROM feed_runs WHERE feed = ?1 AND status = 'applied'
         ORDER BY id DESC LIMIT 1"
    )
}

/// `?N` → `$N` for PostgreSQL.
pub(crate) fn dialect_pg(sql: &str) -> String {
    sql.replace('?', "$")
}

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

pub(crate) fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn status_str(status: FeedRunStatus) -> &'static str {
    status.as_str()
}

/// A feed run row from its columns, in `FEED_RUN_COLUMNS` order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn feed_run_from_columns(
    id: i64,
    feed: String,
    source: String,
    status: &str,
    started_at_ms: i64,
    finished_at_ms: i64,
    counts: [i64; 5],
    error: Option<String>,
    problems: &str,
) -> Result<FeedRunRow, StoreError> {
    let [rows_total, rows_applied, rows_duplicate, rows_bad, skus] = counts;
    Ok(FeedRunRow {
        id,
        run: FeedRun {
            feed,
            source,
            status: FeedRunStatus::parse(status)?,
            started_at: from_ms(started_at_ms)?,
            finished_at: from_ms(finished_at_ms)?,
            rows_total: count(rows_total)?,
            rows_applied: count(rows_applied)?,
            rows_duplicate: count(rows_duplicate)?,
            rows_bad: count(rows_bad)?,
            skus: count(skus)?,
            error,
            problems: serde_json::from_str(problems)?,
        },
    })
}
