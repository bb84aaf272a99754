//! Reconciliation runs: their progress, counters and the listings that were
//! not in sync, plus the one outbox write a run makes — queueing a drifting
//! listing again. A run commits each checked page (items, counters, cursor)
//! in one transaction, so after a crash it resumes after the last page.
//!
//! The SQL is shared by both dialects (`?N` placeholders, see `outbox::pg`).

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockd_core::{ChannelId, Sku};

/// How a listing compared with what the channel showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// The channel shows what stockd wants.
    InSync,
    /// The channel shows something else (sold or edited outside stockd, or a
    /// push it dropped).
    ChannelDiffers,
    /// stockd has the listing; the channel does not know it.
    MissingOnChannel,
    /// The channel has it; stockd does not know it (reported, never touched).
    UnknownToStockd,
    /// An update was in flight or acknowledged after the channel's read:
    /// not comparable, not drift.
    Pending,
    /// The channel could not be read for this listing.
    Unreadable,
}

impl DriftClass {
    pub const ALL: [DriftClass; 6] = [
        DriftClass::InSync,
        DriftClass::ChannelDiffers,
        DriftClass::MissingOnChannel,
        DriftClass::UnknownToStockd,
        DriftClass::Pending,
        DriftClass::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::InSync => "in_sync",
            DriftClass::ChannelDiffers => "channel_differs",
            DriftClass::MissingOnChannel => "missing_on_channel",
            DriftClass::UnknownToStockd => "unknown_to_stockd",
            DriftClass::Pending => "pending",
            DriftClass::Unreadable => "unreadable",
        }
    }

    pub fn parse(raw: &str) -> Option<DriftClass> {
        DriftClass::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<RunStatus, StoreError> {
        match raw {
            "queued" => Ok(RunStatus::Queued),
            "running" => Ok(RunStatus::Running),
            "completed" => Ok(RunStatus::Completed),
            "failed" => Ok(RunStatus::Failed),
            other => Err(StoreError::Corrupt(format!("run status {other:?}"))),
        }
    }
}

/// Listings per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub in_sync: u64,
    pub channel_differs: u64,
    pub missing_on_channel: u64,
    pub unknown_to_stockd: u64,
    pub pending: u64,
    pub unreadable: u64,
}

impl ClassCounts {
    pub fn add(&mut self, class: DriftClass, n: u64) {
        match class {
            DriftClass::InSync => self.in_sync += n,
            DriftClass::ChannelDiffers => self.channel_differs += n,
            DriftClass::MissingOnChannel => self.missing_on_channel += n,
            DriftClass::UnknownToStockd => self.unknown_to_stockd += n,
            DriftClass::Pending => self.pending += n,
            DriftClass::Unreadable => self.unreadable += n,
        }
    }

    /// Listings that drifted (the channel differs or lacks the listing).
    pub fn drift(&self) -> u64 {
        self.channel_differs + self.missing_on_channel
    }
}

/// One reconciliation run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub channel: ChannelId,
    /// `api`, `schedule`, `cli`, `demo`.
    pub trigger: String,
    /// Drifting listings are queued again (otherwise only reported).
    pub auto_fix: bool,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// stockd's listings of the channel when the run started.
    pub total: u64,
    /// Listings compared so far.
    pub checked: u64,
    /// The last SKU of the committed part (the run resumes after it).
    pub cursor: Option<Sku>,
    pub counts: ClassCounts,
    /// Drifting listings queued again.
    pub fixed: u64,
    /// Calls made to the channel.
    pub channel_requests: u64,
    pub error: Option<String>,
}

impl RunRecord {
    /// Drifting listings per listing checked (0 when nothing was checked).
    pub fn drift_rate(&self) -> f64 {
        if self.checked == 0 {
            0.0
        } else {
            self.counts.drift() as f64 / self.checked as f64
        }
    }
}

/// One listing of a run that was not in sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunItem {
    /// stockd's SKU (or the channel's id of a listing stockd does not know).
    pub sku: String,
    pub class: DriftClass,
    /// What stockd wanted the channel to show.
    pub expected: Option<serde_json::Value>,
    /// What the channel showed.
    pub observed: Option<serde_json::Value>,
    pub fixed: bool,
    pub note: Option<String>,
}

/// What one checked page adds to a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageProgress {
    pub checked: u64,
    pub counts: ClassCounts,
    pub fixed: u64,
    pub channel_requests: u64,
    pub cursor: Option<Sku>,
    pub items: Vec<RunItem>,
}

/// A drifting listing to queue again: only if its row is still as the run
/// saw it (same desired generation and channel count generation), so a
/// change that arrived meanwhile wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Requeue {
    pub sku: Sku,
    /// The channel's count as read (becomes stockd's belief).
    pub observed_quantity: Option<i64>,
    /// Forget the acknowledged state (the channel shows another
    /// availability): the next round pushes whatever it is.
    pub forget_pushed: bool,
    pub seen_desired_gen: u64,
    pub seen_channel_gen: u64,
}

/// The note left on a listing queued again by a run (the outbox cause).
pub const REQUEUE_NOTE: &str = "reconciliation";

/// Storage of reconciliation runs.
#[async_trait]
pub trait ReconcileStore: Send + Sync {
    /// Creates a queued run.
    async fn recon_create(
        &self,
        channel: &ChannelId,
        trigger: &str,
        auto_fix: bool,
        now: DateTime<Utc>,
    ) -> Result<RunRecord, StoreError>;
    async fn recon_run(&self, id: i64) -> Result<Option<RunRecord>, StoreError>;
    /// Runs newest first, before `before_id`, optionally of one channel.
    async fn recon_runs(
        &self,
        channel: Option<&ChannelId>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError>;
    /// Runs not finished (queued or running), oldest first.
    async fn recon_open(&self) -> Result<Vec<RunRecord>, StoreError>;
    /// Marks a run running (keeps `started_at` of a resumed run).
    async fn recon_start(&self, id: i64, total: u64, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Commits one checked page: items, counters and cursor together.
    async fn recon_progress(&self, id: i64, page: PageProgress) -> Result<(), StoreError>;
    async fn recon_finish(
        &self,
        id: i64,
        status: RunStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Items of a run in SKU order after `after`, optionally of one class.
    async fn recon_items(
        &self,
        id: i64,
        class: Option<DriftClass>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunItem>, StoreError>;
    /// The latest completed run of each channel.
    async fn recon_latest(&self) -> Result<Vec<RunRecord>, StoreError>;
    /// Queues drifting listings again through the outbox; returns the SKUs
    /// whose row was still as seen (and so are queued).
    async fn recon_requeue(
        &self,
        channel: &ChannelId,
        fixes: Vec<Requeue>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Sku>, StoreError>;
}

// ----- SQL shared by both dialects ------------------------------------------

pub(crate) const RUN_COLUMNS: &str = "id, channel, trigger, auto_fix, status, created_at_ms, \
     started_at_ms, finished_at_ms, total, checked, cursor_sku, in_sync, differs, missing, \
     unknown, pending, unreadable, fixed, channel_requests, error";

pub(crate) fn insert_run_sql() -> String {
    format!(
        "INSERT INTO reconciliation_runs (channel, trigger, auto_fix, status, created_at_ms) \
         VALUES (?1, ?2, ?3, 'queued', ?4) RETURNING {RUN_COLUMNS}"
    )
}

pub(crate) fn run_sql() -> String {
    format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id = ?1")
}

pub(crate) fn runs_sql(channel: bool) -> String {
    let mut sql = format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id < ?1");
    if channel {
        sql.push_str(" AND channel = ?3");
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?2");
    sql
}

pub(crate) fn open_sql() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE status IN ('queued', 'running') \
         ORDER BY id"
    )
}

pub(crate) fn latest_sql() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id IN \
         (SELECT MAX(id) FROM reconciliation_runs WHERE status = 'completed' GROUP BY channel) \
         ORDER BY channel"
    )
}

pub(crate) const START: &str = "UPDATE reconciliation_runs SET status = 'running', \
     started_at_ms = COALESCE(started_at_ms, ?3), total = ?2 WHERE id = ?1";

pub(crate) const PROGRESS: &str = "UPDATE reconciliation_runs SET checked = checked + ?2, \
     in_sync = in_sync + ?3, differs = differs + ?4, missing = missing + ?5, \
     unknown = unknown + ?6, pending = pending + ?7, unreadable = unreadable + ?8, \
     fixed = fixed + ?9, channel_requests = channel_requests + ?10, \
     cursor_sku = COALESCE(?11, cursor_sku) WHERE id = ?1";

/// Upsert: a page re-checked after a crash replaces its items.
pub(crate) const INSERT_ITEM: &str = "INSERT INTO reconciliation_items \
     (run_id, sku, class, expected, observed, fixed, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (run_id, sku) DO UPDATE SET class = excluded.class, \
     expected = excluded.expected, observed = excluded.observed, fixed = excluded.fixed, \
     note = excluded.note";

pub(crate) const FINISH: &str = "UPDATE reconciliation_runs SET status = ?2, error = ?3, \
     finished_at_ms = ?4 WHERE id = ?1";

pub(crate) fn items_sql(class: bool) -> String {
    let mut sql = String::from(
        "SELECT sku, class, expected, observed, fixed, note FROM reconciliation_items \
         WHERE run_id = ?1 AND sku > ?2",
    );
    if class {
        sql.push_str(" AND class = ?4");
    }
    sql.push_str(" ORDER BY sku LIMIT ?3");
    sql
}

/// Queue again only a row still as the run saw it and not already lagging:
/// the channel's count becomes what was read, the count generation moves (an
/// acknowledgement in flight does not clean the row), the row is dirty. The
/// fix's latency runs from the finding: the channel had acknowledged every
/// earlier cause, then moved away from it on its own.
pub(crate) const REQUEUE: &str = "UPDATE listing_state SET \
     channel_quantity = COALESCE(CAST(?3 AS BIGINT), channel_quantity), \
     pushed = CASE WHEN CAST(?4 AS BIGINT) <> 0 THEN NULL ELSE pushed END, \
     channel_gen = channel_gen + 1, dirty_since_ms = ?7, unacked_since_ms = ?7, last_error = ?8 \
     WHERE channel = ?1 AND sku = ?2 AND desired_gen = ?5 AND channel_gen = ?6 \
     AND dirty_since_ms IS NULL AND parked = 0";

/// The raw columns of a run, in `RUN_COLUMNS` order.
pub(crate) struct RawRun {
    pub id: i64,
    pub channel: String,
    pub trigger: String,
    pub auto_fix: i64,
    pub status: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub counters: [i64; 2],
    pub cursor: Option<String>,
    /// in_sync, differs, missing, unknown, pending, unreadable, fixed, requests.
    pub classes: [i64; 8],
    pub error: Option<String>,
}

fn u(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}

impl RawRun {
    pub(crate) fn into_run(self) -> Result<RunRecord, StoreError> {
        use crate::outbox::from_ms;
        let c = self.classes;
        Ok(RunRecord {
            id: self.id,
            channel: crate::rows::parse_id(self.channel, ChannelId::parse)?,
            trigger: self.trigger,
            auto_fix: self.auto_fix != 0,
            status: RunStatus::parse(&self.status)?,
            created_at: from_ms(self.created_at_ms),
            started_at: self.started_at_ms.map(from_ms),
            finished_at: self.finished_at_ms.map(from_ms),
            total: u(self.counters[0]),
            checked: u(self.counters[1]),
            cursor: self
                .cursor
                .map(|s| crate::rows::parse_id(s, Sku::parse))
                .transpose()?,
            counts: ClassCounts {
                in_sync: u(c[0]),
                channel_differs: u(c[1]),
                missing_on_channel: u(c[2]),
                unknown_to_stockd: u(c[3]),
                pending: u(c[4]),
                unreadable: u(c[5]),
            },
            fixed: u(c[6]),
            channel_requests: u(c[7]),
            error: self.error,
        })
    }
}

/// The raw columns of an item.
pub(crate) struct RawItem {
    pub sku: String,
    pub class: String,
    pub expected: Option<String>,
    pub observed: Option<String>,
    pub fixed: i64,
    pub note: Option<String>,
}

impl RawItem {
    pub(crate) fn into_item(self) -> Result<RunItem, StoreError> {
        Ok(RunItem {
            sku: self.sku,
            class: DriftClass::parse(&self.class)
                .ok_or_else(|| StoreError::Corrupt(format!("drift class {:?}", self.class)))?,
            expected: self
                .expected
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            observed: self
                .observed
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            fixed: self.fixed != 0,
            note: self.note,
        })
    }
}

/// The JSON text stored for an item's expected/observed value.
pub(crate) fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(serde_json::Value::to_string)
}

/// The progress parameters ?2..?10 in order.
pub(crate) fn progress_numbers(p: &PageProgress) -> [i64; 9] {
    let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    [
        i(p.checked),
        i(p.counts.in_sync),
        i(p.counts.channel_differs),
        i(p.counts.missing_on_channel),
        i(p.counts.unknown_to_stockd),
        i(p.counts.pending),
        i(p.counts.unreadable),
        i(p.fixed),
        i(p.channel_requests),
    ]
}
