//! SQLite adapter: the embedded default. One file in WAL mode; one writer
//! connection on the writer thread (group commits with `synchronous=FULL`, so
//! an answered event is on disk), and a small pool of reader connections.

use crate::hot;
use crate::rows::{self, channel_column, corrupt, parse_id, parse_time};
use crate::writer::{self, Backend, Loaded, WriterHandle};
use crate::{
    LedgerQuery, LedgerRow, QuarantineRow, Store, StoreError, SubmitOutcome, UpsertSummary,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use stockd_core::group::{GroupWrites, Quarantined, ReplayOutcome};
use stockd_core::stock::stock_view;
use stockd_core::{
    Book, InboundLine, Location, LocationId, Needs, PoId, Quantities, ReservationLine, Sku,
    StockKey, StockView, Submission, Variant,
};

pub(crate) mod batch;
mod channels;
mod console;
mod inbound;
mod kpis;
mod outbox;
mod publish;
mod reconcile;
mod unmapped;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_ledger.sql")),
    (2, include_str!("../migrations/sqlite/0002_channels.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_kit_reservations.sql"),
    ),
    (4, include_str!("../migrations/sqlite/0004_outbox.sql")),
    (5, include_str!("../migrations/sqlite/0005_returns.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_catalog_scale.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_protective_sync.sql"),
    ),
    (8, include_str!("../migrations/sqlite/0008_inbound.sql")),
    (
        9,
        include_str!("../migrations/sqlite/0009_reconciliation.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_oversell_per_component.sql"),
    ),
    (
        11,
        include_str!("../migrations/sqlite/0011_console_search.sql"),
    ),
    (
        12,
        include_str!("../migrations/sqlite/0012_unmapped_channel_lines.sql"),
    ),
    (
        13,
        include_str!("../migrations/sqlite/0013_tracked_acknowledgements.sql"),
    ),
    (
        14,
        include_str!("../migrations/sqlite/0014_kit_changes.sql"),
    ),
    (
        15,
        include_str!("../migrations/sqlite/0015_bulk_catalog_writes.sql"),
    ),
    (
        16,
        include_str!("../migrations/sqlite/0016_transient_dead_letters.sql"),
    ),
    (
        17,
        include_str!("../migrations/sqlite/0017_listings_by_sku_covering.sql"),
    ),
    (
        18,
        include_str!("../migrations/sqlite/0018_listing_keys_by_sku.sql"),
    ),
    (
        19,
        include_str!("../migrations/sqlite/0019_listing_states_by_primary_key.sql"),
    ),
    (
        20,
        include_str!("../migrations/sqlite/0020_listing_states_by_sku.sql"),
    ),
];
/// Reader connections kept open for reuse.
const READERS_MAX: usize = 8;

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

pub(crate) struct SqliteStore {
    /// Under a simulated clock: reads run on the calling thread.
    simulated: bool,
    writer: WriterHandle,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: String,
    checkpointer: Checkpointer,
    setup_cache: crate::availability::SetupCache,
}

/// Checkpoints the WAL on a thread of its own, so the writer's commits never
/// pay for copying pages back into the database file.
struct Checkpointer {
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    fn spawn(path: &str) -> Result<Checkpointer, StoreError> {
        let conn = connect(path, READER_CACHE_KIB)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stockd-sqlite-checkpoint".into())
            .spawn(move || {
                // Wakes every interval, and at once when told to stop.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(error = %e, "sqlite checkpoint failed");
                    }
                }
                if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                    tracing::warn!(error = %e, "final sqlite checkpoint failed");
                }
            })
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Checkpointer {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread (see [`crate::sim_wait::join`] for `simulated`).
    async fn stop(&self, simulated: bool) {
        drop(self.stop.lock().ok().and_then(|mut s| s.take()));
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            crate::sim_wait::join(thread, simulated).await;
        }
    }
}

/// Page cache of the writer connection, in KiB.
const WRITER_CACHE_KIB: i64 = 65_536;
/// Page cache of each reader connection, in KiB: up to `READERS_MAX` are
/// open, so this bounds most of the process's memory on a large catalog.
const READER_CACHE_KIB: i64 = 16_384;

/// `sql` with each `LIMIT ?N` written `LIMIT (?N + 0)`. SQLite reads a LIMIT
/// given as a bare parameter while it plans a statement and then marks the
/// statement expired whenever that parameter is bound again, so a cached
/// statement would be parsed and planned anew on every run (a fifth of the
/// reads of a simulated day went there, most of it the dispatcher's due
/// rows). As an expression the value stays out of planning.
pub(crate) fn unplanned_limit(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find("LIMIT ?") {
        let digits = rest[at + 7..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let end = at + 7 + digits;
        out.push_str(&rest[..at]);
        if digits == 0 {
            out.push_str("LIMIT ?");
        } else {
            out.push_str("LIMIT (");
            out.push_str(&rest[at + 6..end]);
            out.push_str(" + 0)");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn connect(path: &str, cache_kib: i64) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -{cache_kib};"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A simulated store's connections wait 5 ms, not 10 s, for a lock another
/// connection holds (a simulated database outage): waiting blocks in real
/// time while the simulated clock stands still, so a write the lock refuses
/// fails at once, as it would after the timeout. Reader connections write
/// too (poll cursors, dead letters).
fn simulated_lock_wait(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_millis(5))?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, chrono::Utc::now().to_rfc3339()],
        )?;
        tracing::info!(version, "applied sqlite migration");
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    pub(crate) fn open(path: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, None)
    }

    /// `clock`: a simulated clock (see [`crate::open_simulated`]).
    pub(crate) fn open_with(
        path: &str,
        clock: Option<crate::Clock>,
    ) -> Result<SqliteStore, StoreError> {
        let simulated = clock.is_some();
        let mut conn = connect(path, WRITER_CACHE_KIB)?;
        if simulated {
            simulated_lock_wait(&conn)?;
        }
        migrate(&mut conn)?;
        drop(conn);
        let writer_path = path.to_string();
        let writer = WriterHandle::spawn_with("stockd-sqlite-writer", clock, move || {
            Box::pin(async move { SqliteBackend::open(&writer_path, simulated, WAL_LIMIT_BYTES) })
        })?;
        Ok(SqliteStore {
            simulated,
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.to_string(),
            checkpointer: Checkpointer::spawn(path)?,
            setup_cache: Default::default(),
        })
    }

    /// Runs `read` on a pooled reader connection off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        if self.simulated {
            // A simulation reads on its own (single) thread: see `open_simulated`.
            let conn = match readers.lock().map_err(corrupt)?.pop() {
                Some(conn) => conn,
                None => {
                    let conn = connect(&path, READER_CACHE_KIB)?;
                    simulated_lock_wait(&conn)?;
                    conn
                }
            };
            let result = read(&conn);
            readers.lock().map_err(corrupt)?.push(conn);
            return result;
        }
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map_err(corrupt)?.pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect(&path, READER_CACHE_KIB)?,
            };
            let result = read(&conn);
            let mut pool = readers.lock().map_err(corrupt)?;
            if pool.len() < READERS_MAX {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }
}

fn location_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, bool, i32)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_location(raw: (String, String, bool, i32)) -> Result<Location, StoreError> {
    Ok(Location {
        id: parse_id(raw.0, LocationId::parse)?,
        name: raw.1,
        sellable: raw.2,
        priority: raw.3,
    })
}

fn all_locations(conn: &Connection) -> Result<Vec<Location>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name, sellable, priority FROM locations")?;
    let raw = stmt
        .query_map([], location_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter().map(to_location).collect()
}

fn stock_rows(conn: &Connection, sku: &str) -> Result<Vec<(String, Quantities)>, StoreError> {
    let mut stmt = conn.prepare_cached(hot::SQLITE_STOCK_OF)?;
    let rows = stmt
        .query_map([sku], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Quantities {
                    on_hand: r.get(1)?,
                    reserved: r.get(2)?,
                    pending_return: r.get(3)?,
                    written_off: r.get(4)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn inbound_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 4]> {
    Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?])
}

pub(super) fn to_inbound(
    raw: [Option<String>; 4],
    qty: i64,
    confirmed: bool,
) -> Result<InboundLine, StoreError> {
    let [po_id, sku, location, eta] = raw;
    let need = |v: Option<String>| v.ok_or_else(|| corrupt("null inbound key"));
    Ok(InboundLine {
        po_id: parse_id(need(po_id)?, PoId::parse)?,
        sku: parse_id(need(sku)?, Sku::parse)?,
        location: parse_id(need(location)?, LocationId::parse)?,
        qty,
        eta: eta
            .map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(corrupt))
            .transpose()?,
        confirmed,
    })
}

/// An inbound row in `INBOUND_COLUMNS` order: its text columns, qty and confirmed.
pub(super) fn inbound_columns(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<([Option<String>; 4], i64, bool)> {
    Ok((inbound_from_row(r)?, r.get(3)?, r.get(5)?))
}

const INBOUND_COLUMNS: &str = "po_id, sku, location, qty, eta, confirmed";

fn inbound_query(
    conn: &Connection,
    sql: &str,
    args: &[&str],
) -> Result<Vec<InboundLine>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let raw = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), inbound_columns)?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(|(raw, qty, confirmed)| to_inbound(raw, qty, confirmed))
        .collect()
}

fn stock_view_of(
    conn: &Connection,
    sku: &Sku,
    locations: &HashMap<LocationId, Location>,
) -> Result<StockView, StoreError> {
    let rows = stock_rows(conn, sku.as_str())?
        .into_iter()
        .filter_map(|(loc, q)| {
            LocationId::parse(loc)
                .ok()
                .and_then(|id| locations.get(&id).cloned())
                .map(|l| (l, q))
        })
        .collect::<Vec<_>>();
    let inbound = inbound_query(
        conn,
        &format!("SELECT {INBOUND_COLUMNS} FROM inbound WHERE sku = ?1"),
        &[sku.as_str()],
    )?;
    Ok(stock_view(sku.clone(), &rows, &inbound))
}

/// The lines of one RMA, in the order first received.
fn return_lines(
    conn: &Connection,
    rma_id: &str,
) -> Result<Vec<stockd_core::returns::ReturnLine>, StoreError> {
    let raw = conn
        .prepare_cached(
            "SELECT sku, location, received_qty, sellable_qty, unsellable_qty FROM returns
             WHERE rma_id = ?1 ORDER BY position",
        )?
        .query_map([rma_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?],
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(|(sku, location, qty)| rows::return_line(sku, location, qty))
        .collect()
}

fn variant_exists(conn: &Connection, sku: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(hot::SQLITE_VARIANT_EXISTS)?
        .query_row([sku], |_| Ok(()))
        .optional()?
        .is_some())
}

fn quarantine_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, String, String, String, String, String, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(&self, events: Vec<Submission>) -> Result<SubmitOutcome, StoreError> {
        self.writer.submit(events).await
    }

    async fn submit_channel_order(
        &self,
        events: Vec<Submission>,
        channel: &stockd_core::ChannelId,
        moves: Vec<(Sku, Option<i64>)>,
    ) -> Result<SubmitOutcome, StoreError> {
        let moved = crate::outbox::channel_moves(channel, moves, self.writer.now());
        self.writer.submit_moving(events, moved).await
    }

    async fn upsert_location(&self, location: Location) -> Result<UpsertSummary, StoreError> {
        self.writer.upsert_location(location).await
    }

    async fn upsert_variants(&self, variants: Vec<Variant>) -> Result<UpsertSummary, StoreError> {
        self.writer.upsert_variants(variants).await
    }

    async fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached("SELECT id, name, sellable, priority FROM locations WHERE id = ?1")?
                .query_row([id.as_str()], location_from_row)
                .optional()?;
            raw.map(to_location).transpose()
        })
        .await
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        self.read(|conn| {
            let mut all = all_locations(conn)?;
            all.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
            Ok(all)
        })
        .await
    }

    async fn variant(&self, sku: &Sku) -> Result<Option<Variant>, StoreError> {
        let sku = sku.clone();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(hot::SQLITE_VARIANT)?
                .query_row([sku.as_str()], |r| {
                    Ok(Variant {
                        sku: sku.clone(),
                        title: r.get(0)?,
                        product_id: r.get(1)?,
                        gtin: r.get(2)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn stock(&self, sku: &Sku) -> Result<Option<StockView>, StoreError> {
        let sku = sku.clone();
        self.read(move |conn| {
            if !variant_exists(conn, sku.as_str())? {
                return Ok(None);
            }
            let locations = all_locations(conn)?
                .into_iter()
                .map(|l| (l.id.clone(), l))
                .collect();
            stock_view_of(conn, &sku, &locations).map(Some)
        })
        .await
    }

    async fn stock_page(
        &self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<StockView>, StoreError> {
        let after = after.map(|s| s.as_str().to_string()).unwrap_or_default();
        self.read(move |conn| {
            let locations = all_locations(conn)?
                .into_iter()
                .map(|l| (l.id.clone(), l))
                .collect();
            let skus = conn
                .prepare_cached(&unplanned_limit(hot::VARIANTS_PAGE))?
                .query_map(params![after, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            skus.into_iter()
                .map(|sku| stock_view_of(conn, &parse_id(sku, Sku::parse)?, &locations))
                .collect()
        })
        .await
    }

    async fn ledger(&self, query: &LedgerQuery) -> Result<Vec<LedgerRow>, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            const COLUMNS: &str = "l.seq, l.key, l.type, l.occurred_at, l.received_at, l.source, l.event, l.changes, l.notes";
            let (sql, sku) = match &query.sku {
                Some(sku) => (
                    format!("SELECT {COLUMNS} FROM ledger_skus s JOIN ledger l ON l.seq = s.seq WHERE s.sku = ?1 AND s.seq > ?2 ORDER BY s.seq LIMIT ?3"),
                    sku.as_str().to_string(),
                ),
                None => (
                    format!("SELECT {COLUMNS} FROM ledger l WHERE ?1 = ?1 AND l.seq > ?2 ORDER BY l.seq LIMIT ?3"),
                    String::new(),
                ),
            };
            let mut stmt = conn.prepare_cached(&sql)?;
            let raw = stmt
                .query_map(params![sku, query.after_seq as i64, query.limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, String>(8)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|(seq, key, kind, occurred_at, received_at, source, event, changes, notes)| {
                    rows::ledger_row(
                        seq,
                        key,
                        kind,
                        occurred_at.as_deref().map(parse_time).transpose()?,
                        parse_time(&received_at)?,
                        source,
                        serde_json::from_str(&event)?,
                        serde_json::from_str(&changes)?,
                        serde_json::from_str(&notes)?,
                    )
                })
                .collect()
        })
        .await
    }

    async fn quarantine(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<QuarantineRow>, StoreError> {
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(
                    "SELECT id, key, type, status, reason, received_at, event FROM quarantine
                     WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![after_id, limit], quarantine_row)?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|(id, key, kind, status, reason, received_at, event)| {
                    Ok(QuarantineRow {
                        id,
                        key,
                        kind,
                        status,
                        reason,
                        received_at: parse_time(&received_at)?,
                        event: serde_json::from_str(&event)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn returns(
        &self,
        status: Option<stockd_core::returns::ReturnStatus>,
        after: Option<&stockd_core::RmaId>,
        limit: u32,
    ) -> Result<Vec<stockd_core::returns::ReturnView>, StoreError> {
        let after = after.map_or(String::new(), |a| a.as_str().to_string());
        self.read(move |conn| {
            let ids = conn
                .prepare_cached(rows::return_ids_sql(status))?
                .query_map(params![after, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.into_iter()
                .map(|id| {
                    let lines = return_lines(conn, &id)?;
                    let rma_id = parse_id(id, stockd_core::RmaId::parse)?;
                    Ok(stockd_core::returns::return_view(rma_id, &lines))
                })
                .collect()
        })
        .await
    }

    async fn order_reservations(
        &self,
        order: &stockd_core::OrderRef,
    ) -> Result<Vec<ReservationLine>, StoreError> {
        let order = order.clone();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(rows::ORDER_RESERVATIONS_SQL)?
                .query_map(
                    params![channel_column(&order), order.order_id.as_str()],
                    |r| {
                        Ok(rows::ReservationColumns {
                            line_id: r.get(0)?,
                            alloc_index: r.get(1)?,
                            sku: r.get(2)?,
                            location: r.get(3)?,
                            qty: [r.get(4)?, r.get(5)?, r.get(6)?],
                            kit: (r.get(7)?, r.get(8)?),
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|c| rows::reservation_line(&order, c))
                .collect()
        })
        .await
    }

    async fn return_record(
        &self,
        rma_id: &stockd_core::RmaId,
    ) -> Result<Option<stockd_core::returns::ReturnView>, StoreError> {
        let rma_id = rma_id.clone();
        self.read(move |conn| {
            let lines = return_lines(conn, rma_id.as_str())?;
            Ok((!lines.is_empty()).then(|| stockd_core::returns::return_view(rma_id, &lines)))
        })
        .await
    }

    async fn refresh_desired(&self, skus: Option<Vec<Sku>>) -> Result<usize, StoreError> {
        self.writer.refresh(skus).await
    }

    async fn discard_quarantined(&self, id: i64) -> Result<bool, StoreError> {
        self.writer.discard_quarantined(id).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.checkpointer.stop(self.simulated).await;
    }

    fn recompute_done(&self) -> bool {
        self.writer.recompute_done()
    }

    fn commits(&self) -> crate::commits::Commits {
        self.writer.commits.subscribe()
    }

    async fn setup_generation(&self) -> Result<i64, StoreError> {
        self.read(|conn| Ok(conn.query_row(hot::SETUP_GENERATION, [], |r| r.get(0))?))
            .await
    }

    fn setup_cache(&self) -> &crate::availability::SetupCache {
        &self.setup_cache
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

/// The writer side: runs on the writer thread only.
struct SqliteBackend {
    conn: Connection,
    /// The database's write-ahead log and its bound (see
    /// [`SqliteBackend::bound_wal`]).
    wal_path: std::path::PathBuf,
    wal_limit_bytes: u64,
    /// The desired-state setup kept between transactions, by generation.
    setup: Option<(i64, std::sync::Arc<crate::availability::LoadedSetup>)>,
}

/// The write-ahead log's bound: past it, the writer checkpoints before its
/// next transaction, and SQLite cuts the file back to it when the log starts
/// over (`journal_size_limit`). A group of 20,000 events on a listed catalog
/// writes tens of megabytes of frames: the writer copies back every few groups.
const WAL_LIMIT_BYTES: u64 = 256 << 20;

impl SqliteBackend {
    /// The writer's connection to the database at `path`.
    fn open(path: &str, simulated: bool, wal_limit_bytes: u64) -> Result<Self, StoreError> {
        let conn = connect(path, WRITER_CACHE_KIB)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {wal_limit_bytes};"
        ))?;
        if simulated {
            // A simulated crash drops the process, not the machine: what
            // was written stays with the operating system, so a simulated
            // day does not wait for the disk at each commit (WAL keeps the
            // database consistent either way).
            conn.execute_batch("PRAGMA synchronous = NORMAL")?;
            simulated_lock_wait(&conn)?;
        }
        Ok(SqliteBackend {
            conn,
            wal_path: format!("{path}-wal").into(),
            wal_limit_bytes,
            setup: None,
        })
    }

    /// Keeps the write-ahead log bounded under a steady stream of groups.
    /// SQLite starts the log over only when a write transaction begins with
    /// every committed frame copied back into the database, and the
    /// background checkpointer never copies the group just committed before
    /// the writer begins the next: without this the log grows for as long as
    /// the stream lasts (past the database's own size within seconds at
    /// catalog scale), every frame lands on a newly allocated block, and
    /// reads search an ever larger WAL index. Past the bound the writer
    /// copies what is left itself; PASSIVE never waits for a reader (a
    /// reader's older snapshot only defers the restart to a later group).
    fn bound_wal(&self) -> Result<(), StoreError> {
        let over = std::fs::metadata(&self.wal_path).is_ok_and(|m| m.len() > self.wal_limit_bytes);
        if over {
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

impl Backend for SqliteBackend {
    async fn begin(&mut self) -> Result<(), StoreError> {
        self.bound_wal()?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    async fn rollback(&mut self) {
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "sqlite rollback failed");
        }
    }

    async fn load(&mut self, needs: &Needs) -> Result<Loaded, StoreError> {
        // The kit graph the writer keeps (reloaded when the setup moved).
        let setup = crate::outbox::current_setup(self).await?;
        let conn = &self.conn;
        let mut book = Book::new(all_locations(conn)?);
        let mut keys = HashMap::with_capacity(needs.keys.len());
        // One statement per 200 keys: a group of 20,000 events would
        // otherwise run 20,000 look-ups.
        let asked: Vec<&str> = needs
            .keys
            .iter()
            .map(stockd_core::IdempotencyKey::as_str)
            .collect();
        batch::each_batch(
            conn,
            batch::idempotency_in(),
            &[],
            &asked,
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
            |(key, hash, result)| {
                keys.insert(
                    parse_id(key, stockd_core::IdempotencyKey::parse)?,
                    rows::record(&hash, &result)?,
                );
                Ok(())
            },
        )?;
        let mut skus = needs.skus.clone();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT line_id, alloc_index, sku, location, ordered_qty, shipped_qty, cancelled_qty,
                        kit_sku, per_kit_qty
                 FROM reservations WHERE channel = ?1 AND order_id = ?2",
            )?;
            for order in &needs.orders {
                let lines = stmt
                    .query_map(
                        params![channel_column(order), order.order_id.as_str()],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i32>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                [
                                    r.get::<_, i64>(4)?,
                                    r.get::<_, i64>(5)?,
                                    r.get::<_, i64>(6)?,
                                ],
                                (r.get::<_, Option<String>>(7)?, r.get::<_, Option<i64>>(8)?),
                            ))
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                for (line_id, alloc_index, sku, location, [ordered, shipped, cancelled], kit) in
                    lines
                {
                    let sku = parse_id(sku, Sku::parse)?;
                    skus.insert(sku.clone());
                    book.load_reservation(ReservationLine {
                        order: order.clone(),
                        line_id: parse_id(line_id, stockd_core::LineId::parse)?,
                        alloc_index,
                        sku,
                        location: parse_id(location, LocationId::parse)?,
                        ordered_qty: ordered,
                        shipped_qty: shipped,
                        cancelled_qty: cancelled,
                        kit: rows::kit_part(kit.0, kit.1)?,
                    });
                }
            }
        }
        for rma_id in &needs.rmas {
            let lines = return_lines(conn, rma_id.as_str())?;
            skus.extend(lines.iter().map(|l| l.sku.clone()));
            book.load_returns(rma_id.clone(), lines);
        }
        {
            // Kits named by the events (an order for one reserves its
            // components), from the kit graph the writer keeps: no look-up
            // per SKU.
            let graph = &setup.setup.graph;
            for kit in needs.skus.iter().filter(|sku| graph.is_kit(sku)) {
                let components: Vec<(Sku, i64)> = graph
                    .components(kit)
                    .iter()
                    .map(|c| (c.sku.clone(), i64::from(c.qty)))
                    .collect();
                skus.extend(components.iter().map(|(sku, _)| sku.clone()));
                book.load_kit(kit.clone(), components);
            }
        }
        {
            // No row for a SKU means an unknown variant; a row without a
            // location, a known variant without stock rows yet.
            let asked: Vec<&str> = skus.iter().map(Sku::as_str).collect();
            batch::each_batch(
                conn,
                batch::variant_stock_in(),
                &[],
                &asked,
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        Quantities {
                            on_hand: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                            reserved: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                            pending_return: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                            written_off: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                        },
                    ))
                },
                |(sku, location, quantities)| {
                    let sku = batch::sku(sku)?;
                    book.load_variant(sku.clone());
                    if let Some(location) = location {
                        book.load_stock(
                            StockKey {
                                sku,
                                location: parse_id(location, LocationId::parse)?,
                            },
                            quantities,
                        );
                    }
                    Ok(())
                },
            )?;
        }
        for key in &needs.inbound {
            let lines = inbound_query(
                conn,
                &format!("SELECT {INBOUND_COLUMNS} FROM inbound WHERE po_id = ?1 AND sku = ?2 AND location = ?3"),
                &[key.po_id.as_str(), key.sku.as_str(), key.location.as_str()],
            )?;
            for line in lines {
                book.load_inbound(line);
            }
        }
        let next_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger", [], |r| {
                r.get(0)
            })?;
        Ok(Loaded {
            book,
            keys,
            next_seq: next_seq as u64,
        })
    }

    async fn write(&mut self, book: &Book, writes: &GroupWrites) -> Result<(), StoreError> {
        let conn = &self.conn;
        {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO stock (sku, location, on_hand, reserved, pending_return, written_off)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sku, location) DO UPDATE SET on_hand = excluded.on_hand,
                   reserved = excluded.reserved, pending_return = excluded.pending_return,
                   written_off = excluded.written_off",
            )?;
            for (key, q) in book.changed_stock() {
                stmt.execute(params![
                    key.sku.as_str(),
                    key.location.as_str(),
                    q.on_hand,
                    q.reserved,
                    q.pending_return,
                    q.written_off
                ])?;
            }
        }
        {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO reservations (channel, order_id, line_id, alloc_index, sku, location,
                   ordered_qty, shipped_qty, cancelled_qty, kit_sku, per_kit_qty)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (channel, order_id, line_id, alloc_index) DO UPDATE SET
                   ordered_qty = excluded.ordered_qty, shipped_qty = excluded.shipped_qty,
                   cancelled_qty = excluded.cancelled_qty",
            )?;
            for (order, lines) in book.changed_orders() {
                for line in lines {
                    stmt.execute(params![
                        channel_column(order),
                        order.order_id.as_str(),
                        line.line_id.as_str(),
                        line.alloc_index,
                        line.sku.as_str(),
                        line.location.as_str(),
                        line.ordered_qty,
                        line.shipped_qty,
                        line.cancelled_qty,
                        line.kit.as_ref().map(|k| k.kit_sku.as_str()),
                        line.kit.as_ref().map(|k| k.per_kit_qty)
                    ])?;
                }
            }
        }
        {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO inbound (po_id, sku, location, qty, eta, confirmed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (po_id, sku, location) DO UPDATE SET qty = excluded.qty,
                   eta = excluded.eta, confirmed = excluded.confirmed",
            )?;
            for line in book.changed_inbound() {
                stmt.execute(params![
                    line.po_id.as_str(),
                    line.sku.as_str(),
                    line.location.as_str(),
                    line.qty,
                    line.eta.map(|d| d.format("%Y-%m-%d").to_string()),
                    line.confirmed
                ])?;
            }
        }
        {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO returns (rma_id, position, sku, location, received_qty, sellable_qty,
                   unsellable_qty)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (rma_id, position) DO UPDATE SET received_qty = excluded.received_qty,
                   sellable_qty = excluded.sellable_qty, unsellable_qty = excluded.unsellable_qty",
            )?;
            for (rma_id, lines) in book.changed_returns() {
                for (position, line) in lines.iter().enumerate() {
                    stmt.execute(params![
                        rma_id.as_str(),
                        position as i64,
                        line.sku.as_str(),
                        line.location.as_str(),
                        line.received_qty,
                        line.sellable_qty,
                        line.unsellable_qty
                    ])?;
                }
            }
        }
        {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO idempotency (key, payload_hash, result) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET payload_hash = excluded.payload_hash, result = excluded.result",
            )?;
            let mut delete = conn.prepare_cached("DELETE FROM idempotency WHERE key = ?1")?;
            for (key, record) in writer::last_per_key(writes) {
                match record {
                    Some(record) => {
                        upsert.execute(params![
                            key.as_str(),
                            &record.payload_hash.0[..],
                            serde_json::to_string(&record.result)?
                        ])?;
                    }
                    None => {
                        delete.execute([key.as_str()])?;
                    }
                }
            }
        }
        {
            let mut ledger = conn.prepare_cached(
                "INSERT INTO ledger (seq, key, type, occurred_at, received_at, source, event, changes, notes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut ledger_skus =
                conn.prepare_cached("INSERT INTO ledger_skus (sku, seq) VALUES (?1, ?2)")?;
            let mut oversells = conn.prepare_cached(
                "INSERT INTO oversells (seq, channel, order_id, line_id, sku, location, shortfall_qty, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for entry in &writes.ledger {
                let columns = rows::ledger_columns(entry)?;
                let received_at = entry.received_at.to_rfc3339();
                ledger.execute(params![
                    entry.seq as i64,
                    entry.event.key.as_str(),
                    entry.event.kind.type_name(),
                    entry.event.occurred_at.map(|t| t.to_rfc3339()),
                    received_at,
                    entry.event.source,
                    columns.event,
                    columns.changes,
                    columns.notes
                ])?;
                for sku in &columns.skus {
                    ledger_skus.execute(params![sku, entry.seq as i64])?;
                }
                if let Some(order) = entry.event.kind.order_ref() {
                    for (line_id, sku, location, shortfall) in rows::oversells(entry) {
                        oversells.execute(params![
                            entry.seq as i64,
                            channel_column(order),
                            order.order_id.as_str(),
                            line_id,
                            sku,
                            location,
                            shortfall,
                            received_at
                        ])?;
                    }
                }
            }
        }
        {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO quarantine (key, type, status, reason, wait_key, payload_hash, event, received_at)
                 VALUES (?1, ?2, 'waiting', ?3, ?4, ?5, ?6, ?7)",
            )?;
            for entry in &writes.quarantined {
                stmt.execute(params![
                    entry.event.key.as_str(),
                    entry.event.kind.type_name(),
                    entry.awaiting.reason(),
                    entry.awaiting.wait_key(),
                    &entry.payload_hash.0[..],
                    serde_json::to_string(&entry.event)?,
                    entry.received_at.to_rfc3339()
                ])?;
            }
        }
        for outcome in &writes.replayed {
            match outcome {
                ReplayOutcome::Applied { id, .. } => {
                    conn.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?
                        .execute([id])?;
                }
                ReplayOutcome::StillWaiting { id, awaiting } => {
                    conn.prepare_cached(
                        "UPDATE quarantine SET reason = ?2, wait_key = ?3 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        awaiting.reason(),
                        awaiting.wait_key()
                    ])?;
                }
                ReplayOutcome::Rejected { id, error } => {
                    conn.prepare_cached(
                        "UPDATE quarantine SET status = 'rejected', reason = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, format!("{}: {error}", error.code())])?;
                }
            }
        }
        Ok(())
    }

    async fn upsert_location(&mut self, location: &Location) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO locations (id, name, sellable, priority) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, sellable = excluded.sellable,
                   priority = excluded.priority",
            )?
            .execute(params![
                location.id.as_str(),
                location.name,
                location.sellable,
                location.priority
            ])?;
        self.conn.prepare_cached(hot::BUMP_SETUP)?.execute([])?;
        Ok(())
    }

    async fn upsert_variants(&mut self, variants: &[Variant]) -> Result<(), StoreError> {
        // New rows only insert; existing rows are read first, so the title
        // search is told only of titles that are new or changed.
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO variants (sku, title, product_id, gtin) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sku) DO NOTHING RETURNING rowid",
        )?;
        let mut existing = self
            .conn
            .prepare_cached("SELECT rowid, title FROM variants WHERE sku = ?1")?;
        let mut update = self.conn.prepare_cached(
            "UPDATE variants SET title = ?2, product_id = ?3, gtin = ?4 WHERE rowid = ?1",
        )?;
        let mut titles = TitleChanges::default();
        for v in variants {
            let params = params![v.sku.as_str(), v.title, v.product_id, v.gtin];
            if let Some(rowid) = insert
                .query_row(params, |r| r.get::<_, i64>(0))
                .optional()?
            {
                titles.written(rowid, None, &v.title);
                continue;
            }
            let (rowid, old_title) = existing.query_row([v.sku.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            update.execute(params![rowid, v.title, v.product_id, v.gtin])?;
            titles.written(rowid, Some(old_title), &v.title);
        }
        titles.apply(&self.conn)
    }

    async fn waiting_keys(&mut self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT wait_key FROM quarantine WHERE status = 'waiting'")?;
        let keys = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(keys)
    }

    async fn waiting_for(
        &mut self,
        wait_keys: &[String],
        limit: usize,
    ) -> Result<Vec<Quarantined>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, payload_hash, event FROM quarantine
             WHERE status = 'waiting' AND wait_key = ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut found = Vec::new();
        for key in wait_keys {
            let rows = stmt
                .query_map(params![key, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (id, hash, event) in rows {
                found.push(rows::quarantined(id, &hash, serde_json::from_str(&event)?)?);
            }
        }
        // Replay in arrival order across wait keys.
        found.sort_by_key(|q| q.id);
        found.truncate(limit);
        Ok(found)
    }

    async fn discard_quarantined(&mut self, id: i64) -> Result<bool, StoreError> {
        let key: Option<String> = self
            .conn
            .prepare_cached("DELETE FROM quarantine WHERE id = ?1 RETURNING key")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if let Some(key) = &key {
            // Free the key only if it still names the quarantined (unapplied) event.
            self.conn
                .prepare_cached(
                    "DELETE FROM idempotency WHERE key = ?1 AND json_extract(result, '$.status') = 'quarantined'",
                )?
                .execute([key])?;
        }
        Ok(key.is_some())
    }
}

/// What a variant upsert changed in the titles the console searches
/// (`variants_title`, an FTS5 index over `variants` with no insert or update
/// trigger since migration 0015): fed once per upsert, in rowid order.
#[derive(Default)]
struct TitleChanges {
    /// Per row: the title indexed before the upsert (`None`: a new row)
    /// and the title it wrote last.
    rows: std::collections::BTreeMap<i64, (Option<Option<String>>, Option<String>)>,
}

impl TitleChanges {
    /// Row `rowid` now has `title`; `indexed` is its title before (`None` for a new row).
    fn written(&mut self, rowid: i64, indexed: Option<Option<String>>, title: &Option<String>) {
        let entry = self.rows.entry(rowid).or_insert_with(|| (indexed, None));
        entry.1.clone_from(title);
    }

    fn apply(self, conn: &Connection) -> Result<(), StoreError> {
        // An external-content index forgets a row given the title it indexed.
        let mut remove = conn.prepare_cached(
            "INSERT INTO variants_title (variants_title, rowid, title) VALUES ('delete', ?1, ?2)",
        )?;
        let mut add =
            conn.prepare_cached("INSERT INTO variants_title (rowid, title) VALUES (?1, ?2)")?;
        for (rowid, (indexed, title)) in &self.rows {
            match indexed {
                Some(old) if old == title => continue,
                Some(old) => {
                    remove.execute(params![rowid, old])?;
                }
                None => {}
            }
            add.execute(params![rowid, title])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_write_ahead_log_starts_over_once_past_its_bound_though_groups_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let path = path.to_str().unwrap();
        migrate(&mut connect(path, READER_CACHE_KIB).unwrap()).unwrap();
        let limit_bytes = 64 << 10;
        let mut writer = SqliteBackend::open(path, false, limit_bytes).unwrap();
        writer
            .conn
            .execute_batch("CREATE TABLE scratch (body BLOB)")
            .unwrap();
        let wal_bytes = || std::fs::metadata(format!("{path}-wal")).unwrap().len();
        let group = |writer: &mut SqliteBackend, rows: usize| {
            let mut insert = writer
                .conn
                .prepare_cached("INSERT INTO scratch (body) VALUES (zeroblob(1000))")
                .unwrap();
            for _ in 0..rows {
                insert.execute([]).unwrap();
            }
        };
        // Groups back to back, as under load: no checkpoint runs between
        // them (the background checkpointer is not started here).
        for _ in 0..3 {
            writer.begin().await.unwrap();
            group(&mut writer, 100);
            writer.commit().await.unwrap();
        }
        assert!(wal_bytes() > limit_bytes, "{} bytes", wal_bytes());
        // The next group begins past the bound: the log is copied back, starts
        // over, and its commit cuts the file back to the bound.
        writer.begin().await.unwrap();
        group(&mut writer, 1);
        writer.commit().await.unwrap();
        assert!(wal_bytes() <= limit_bytes, "{} bytes", wal_bytes());
        let rows: i64 = writer
            .conn
            .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 301);
    }

    #[test]
    fn a_limit_parameter_does_not_make_the_dispatchers_query_plan_again() {
        assert_eq!(
            unplanned_limit("SELECT a FROM t WHERE b = ?1 LIMIT ?12 OFFSET 0"),
            "SELECT a FROM t WHERE b = ?1 LIMIT (?12 + 0) OFFSET 0"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = connect(path.to_str().unwrap(), READER_CACHE_KIB).unwrap();
        migrate(&mut conn).unwrap();
        let replans = |sql: &str| {
            for now_ms in 0..4_i64 {
                let mut stmt = conn.prepare_cached(sql).unwrap();
                let rows = stmt
                    .query_map(rusqlite::params!["shop", now_ms, 100 + now_ms], |_| Ok(()))
                    .unwrap()
                    .count();
                assert_eq!(rows, 0);
            }
            let stmt = conn.prepare_cached(sql).unwrap();
            stmt.get_status(rusqlite::StatementStatus::RePrepare)
        };
        // As written, each run binds a new limit and SQLite plans again.
        assert!(replans(&crate::outbox::due_sql(false)) > 0);
        assert_eq!(replans(&unplanned_limit(&crate::outbox::due_sql(false))), 0);
    }

    /// Migration 0005 rebuilds RMAs from a ledger written under the pooled
    /// rule: own verifications first, the rest of a location oldest RMA first.
    #[test]
    fn migration_0005_rebuilds_rmas_from_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(dir.path().join("db").to_str().unwrap(), WRITER_CACHE_KIB).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        for (version, sql) in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 'then')",
                [version],
            )
            .unwrap();
        }
        let events = [
            r#"{"key":"1","type":"return_received","rma_id":"R1","sku":"A","location":"W1","qty":2}"#,
            r#"{"key":"2","type":"return_received","rma_id":"R2","sku":"A","location":"W1","qty":1}"#,
            r#"{"key":"3","type":"return_received","rma_id":"R3","sku":"A","location":"W2","qty":1}"#,
            r#"{"key":"4","type":"return_verified","rma_id":"R9","sku":"A","location":"W1","sellable_qty":2,"unsellable_qty":1}"#,
            r#"{"key":"5","type":"return_verified","rma_id":"R3","sku":"A","location":"W2","sellable_qty":1,"unsellable_qty":0}"#,
            r#"{"key":"6","type":"receipt","sku":"A","location":"W1","qty":1}"#,
        ];
        for (seq, event) in events.iter().enumerate() {
            let kind: serde_json::Value = serde_json::from_str(event).unwrap();
            conn.execute(
                "INSERT INTO ledger (seq, key, type, received_at, event, changes, notes)
                 VALUES (?1, ?2, ?3, 'then', ?4, '[]', '[]')",
                params![
                    seq as i64 + 1,
                    seq.to_string(),
                    kind["type"].as_str(),
                    event
                ],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, i64, String, i64, i64, i64)> = conn
            .prepare(
                "SELECT rma_id, position, location, received_qty, sellable_qty, unsellable_qty
                 FROM returns ORDER BY rma_id, position",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |rma: &str, location: &str, received, good, bad| {
            (
                rma.to_string(),
                0,
                location.to_string(),
                received,
                good,
                bad,
            )
        };
        assert_eq!(
            rows,
            [
                row("R1", "W1", 2, 2, 0),
                row("R2", "W1", 1, 0, 1),
                row("R3", "W2", 1, 1, 0)
            ]
        );
    }
}
