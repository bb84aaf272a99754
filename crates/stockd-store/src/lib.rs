//! stockd's storage: one `Store` trait, two adapters (SQLite, the embedded
//! default, and PostgreSQL). Both run the same write path: a single writer
//! collects queued requests into groups, loads the rows a group needs, lets
//! the core apply the events, and commits everything of the group in one
//! transaction (group commit), so throughput is not bounded by one fsync per
//! event.

pub mod availability;
mod canonical;
pub mod channels;
pub mod commits;
pub mod console;
pub mod hot;
pub mod inbound;
pub mod kpis;
pub mod outbox;
mod postgres;
pub mod publish;
pub mod reconcile;
mod rows;
mod sim_wait;
mod sqlite;
pub mod unmapped;
mod writer;

pub mod test_support;

pub use canonical::submission;
pub use channels::{
    ChannelKind, ChannelRecord, ChannelStore, KitChange, ListingRecord, RulesVersion, VariantStock,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use stockd_core::{
    EventResult, Location, LocationId, Note, RequestError, Sku, StockDelta, StockView, Submission,
    Variant,
};

/// A storage failure (not the client's fault). Requests that meet one are not applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    /// Holds only the URL's scheme: the rest may carry a password.
    #[error("unsupported database url scheme {0:?} (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The answer to one request of events: applied (with per-event results) or refused whole.
pub type SubmitOutcome = Result<Vec<EventResult>, RequestError>;

/// One applied event in the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerRow {
    pub seq: u64,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub source: Option<String>,
    /// The event as applied (canonical form).
    pub event: serde_json::Value,
    pub changes: Vec<StockDelta>,
    pub notes: Vec<Note>,
}

/// A filter over the audit trail.
#[derive(Debug, Clone, Default)]
pub struct LedgerQuery {
    pub sku: Option<Sku>,
    pub after_seq: u64,
    pub limit: u32,
}

/// A quarantined event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineRow {
    pub id: i64,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `waiting` until what it names exists; `rejected` when its replay was refused.
    pub status: String,
    pub reason: String,
    pub received_at: DateTime<Utc>,
    pub event: serde_json::Value,
}

/// Counts of a bulk variant upsert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UpsertSummary {
    pub upserted: usize,
    /// Quarantined events that were replayed and applied because of it.
    pub replayed: usize,
}

/// The storage of stockd. Writes go through one writer per store; reads run
/// concurrently.
#[async_trait]
pub trait Store:
    ChannelStore
    + outbox::OutboxStore
    + console::ConsoleReads
    + reconcile::ReconcileStore
    + inbound::InboundStore
    + publish::PublishStore
    + kpis::KpiStore
    + unmapped::UnmappedStore
    + Send
    + Sync
    + 'static
{
    /// Applies one request of events atomically (idempotent per event key).
    async fn submit(&self, events: Vec<Submission>) -> Result<SubmitOutcome, StoreError>;
    /// `submit` for a channel's order change: `moves` (how the channel's own
    /// count moved, per SKU; `None` forgets it) are recorded in the same
    /// transaction when an event applies. Recorded after it, a dispatcher
    /// woken by the order's commit would see stock gone but the channel's
    /// count not yet moved, and push what the channel already shows as a
    /// protective update.
    async fn submit_channel_order(
        &self,
        events: Vec<Submission>,
        channel: &stockd_core::ChannelId,
        moves: Vec<(Sku, Option<i64>)>,
    ) -> Result<SubmitOutcome, StoreError>;
    /// Creates or replaces a location; quarantined events waiting for it are replayed.
    async fn upsert_location(&self, location: Location) -> Result<UpsertSummary, StoreError>;
    /// Creates or replaces variants; quarantined events waiting for them are replayed.
    async fn upsert_variants(&self, variants: Vec<Variant>) -> Result<UpsertSummary, StoreError>;

    async fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError>;
    async fn locations(&self) -> Result<Vec<Location>, StoreError>;
    async fn variant(&self, sku: &Sku) -> Result<Option<Variant>, StoreError>;
    /// The stock of one variant; `None` when the variant is unknown.
    async fn stock(&self, sku: &Sku) -> Result<Option<StockView>, StoreError>;
    /// Stock of variants in SKU order, after `after`.
    async fn stock_page(
        &self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<StockView>, StoreError>;
    async fn ledger(&self, query: &LedgerQuery) -> Result<Vec<LedgerRow>, StoreError>;
    async fn quarantine(&self, after_id: i64, limit: u32)
        -> Result<Vec<QuarantineRow>, StoreError>;
    /// RMAs in id order after `after`, only those with `status` when given.
    async fn returns(
        &self,
        status: Option<stockd_core::returns::ReturnStatus>,
        after: Option<&stockd_core::RmaId>,
        limit: u32,
    ) -> Result<Vec<stockd_core::returns::ReturnView>, StoreError>;
    /// The reservation rows of one order (empty when unknown), in line and allocation order.
    async fn order_reservations(
        &self,
        order: &stockd_core::OrderRef,
    ) -> Result<Vec<stockd_core::ReservationLine>, StoreError>;
    /// One RMA; `None` when nothing of it was received.
    async fn return_record(
        &self,
        rma_id: &stockd_core::RmaId,
    ) -> Result<Option<stockd_core::returns::ReturnView>, StoreError>;
    /// Recomputes listings' desired channel states through the writer: of
    /// `skus` (a listing or kit changed) or, with `None`, every listing (rules
    /// or channels changed). Returns the rows written.
    async fn refresh_desired(&self, skus: Option<Vec<Sku>>) -> Result<usize, StoreError>;
    /// Drops a quarantined event for good; its key is freed. False when absent.
    async fn discard_quarantined(&self, id: i64) -> Result<bool, StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether the recompute of every desired channel state (at start, after
    /// a rules or channel change) is over. Events apply meanwhile.
    fn recompute_done(&self) -> bool;
    /// Moves with every commit of this process's writer (events, desired
    /// states, recorded push outcomes): the dispatcher waits on it instead
    /// of asking the outbox over and over. Other instances' writes on a
    /// shared database do not move it.
    fn commits(&self) -> commits::Commits;
    /// Moves with every change of channels, locations, kits or rules.
    async fn setup_generation(&self) -> Result<i64, StoreError>;
    /// The setup API reads computed with last (see `availability::cached_setup`).
    fn setup_cache(&self) -> &availability::SetupCache;
    /// Finishes queued writes and stops the writer.
    async fn close(&self);
    /// `sqlite` or `postgres`.
    fn backend_name(&self) -> &'static str;
}

/// Opens (and migrates) the store named by a URL: `sqlite://PATH` or
/// `postgres://…` (also `postgresql://…`).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sqlite::SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        Err(StoreError::UnsupportedUrl(
            scheme.chars().take(32).collect(),
        ))
    }
}

/// Where the store takes "now" from (receipt times, outbox causes and
/// retry times): the system clock in production, a simulated clock in
/// `stockd simulate`.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Holds a SQLite database's write lock until dropped, as another process
/// would (a backup, a migration): stockd's writes meanwhile fail as busy,
/// its reads go on. The simulation's database outages.
pub struct SqliteWriteLock(#[allow(dead_code)] rusqlite::Connection);

pub fn hold_sqlite_write_lock(path: &str) -> Result<SqliteWriteLock, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    Ok(SqliteWriteLock(conn))
}

/// Opens (and migrates) a SQLite store at `path` whose writer takes "now"
/// from `clock`. Callers wait for the writer, and reads run, on the calling
/// thread: a simulation on one thread with paused time sees the store's
/// answers at the same points (and its clock does not move meanwhile) in
/// every run of a seed.
pub fn open_simulated(path: &str, clock: Clock) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(sqlite::SqliteStore::open_with(path, Some(clock))?))
}

/// Applies migrations and returns, without starting a writer.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let store = open(url).await?;
    store.close().await;
    Ok(())
}
