//! PostgreSQL adapter: the production store. The writer holds one dedicated
//! connection and takes a transaction-scoped advisory lock per group, so
//! several stockd instances sharing one database apply groups one at a time
//! (sequence numbers follow commit order; concurrent duplicates apply once).
//! Each group costs a fixed number of round trips: rows are read with
//! `= ANY($1)` and written with `UNNEST` arrays.

use crate::hot;
use crate::outbox::pg;
use crate::rows::{self, channel_column, parse_id};
use crate::writer::{self, Backend, Loaded, WriterHandle};
use crate::{
    LedgerQuery, LedgerRow, QuarantineRow, Store, StoreError, SubmitOutcome, UpsertSummary,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Pool, Runtime};
use std::collections::HashMap;
use stockd_core::group::{GroupWrites, Quarantined, ReplayOutcome};
use stockd_core::stock::stock_view;
use stockd_core::{
    Book, InboundLine, LineId, Location, LocationId, Needs, PoId, Quantities, ReservationLine, Sku,
    StockKey, StockView, Submission, Variant,
};
use tokio_postgres::{Client, NoTls, Row, Statement};

mod channels;
mod console;
mod inbound;
mod kpis;
mod outbox;
mod publish;
mod reconcile;
mod statistics;
mod unmapped;

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_ledger.sql")),
    (2, include_str!("../migrations/postgres/0002_channels.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_kit_reservations.sql"),
    ),
    (4, include_str!("../migrations/postgres/0004_outbox.sql")),
    (5, include_str!("../migrations/postgres/0005_returns.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_catalog_scale.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_protective_sync.sql"),
    ),
    (8, include_str!("../migrations/postgres/0008_inbound.sql")),
    (
        9,
        include_str!("../migrations/postgres/0009_reconciliation.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_oversell_per_component.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_console_search.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_unmapped_channel_lines.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_tracked_acknowledgements.sql"),
    ),
    (
        14,
        include_str!("../migrations/postgres/0014_kit_changes.sql"),
    ),
    (
        16,
        include_str!("../migrations/postgres/0016_transient_dead_letters.sql"),
    ),
];
/// Serialises writers of all instances sharing the database ("stockd").
const WRITER_LOCK_ID: i64 = 0x5354_4f43_4b44;
/// Reader connections in the pool.
const READERS_MAX: usize = 8;

pub(crate) struct PgStore {
    writer: WriterHandle,
    readers: Pool,
    setup_cache: crate::availability::SetupCache,
    bulk_writes: statistics::BulkWrites,
}

async fn connect(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // Two instances starting together must not both migrate.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(WRITER_LOCK_ID + 1)])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tracing::info!(version, "applied postgres migration");
    }
    tx.commit().await?;
    Ok(())
}

impl PgStore {
    pub(crate) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut client = connect(url).await?;
        migrate(&mut client).await?;
        drop(client);
        let writer_url = url.to_string();
        let writer = WriterHandle::spawn("stockd-pg-writer", move || {
            Box::pin(async move {
                let client = connect(&writer_url).await?;
                // Statements are prepared once while tables may still be empty;
                // a cached generic plan would then scan whole tables for ever.
                client
                    .batch_execute("SET plan_cache_mode = force_custom_plan")
                    .await?;
                Ok(PgBackend {
                    client,
                    statements: HashMap::new(),
                    owned_statements: HashMap::new(),
                    setup: None,
                    bulk_writes: Default::default(),
                })
            })
        })?;
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_string());
        config.pool = Some(deadpool_postgres::PoolConfig::new(READERS_MAX));
        let readers = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(PgStore {
            writer,
            readers,
            setup_cache: Default::default(),
            bulk_writes: Default::default(),
        })
    }

    /// Counts a bulk write's rows and analyzes the tables it made the
    /// planner misjudge. The write has committed: a failure here is logged,
    /// not returned (the next bulk write tries again).
    async fn keep_statistics(&self, tables: &[&'static str], rows: u64) {
        let analyzed = match self.reader().await {
            Ok(client) => self.bulk_writes.wrote(&**client, tables, rows).await,
            Err(e) => Err(e),
        };
        if let Err(e) = analyzed {
            tracing::warn!(error = %e, ?tables, "could not analyze after a bulk write");
        }
    }

    async fn reader(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.readers
            .get()
            .await
            .map_err(|e| StoreError::Database(e.to_string()))
    }
}

fn to_location(row: &Row) -> Result<Location, StoreError> {
    Ok(Location {
        id: parse_id(row.get(0), LocationId::parse)?,
        name: row.get(1),
        sellable: row.get(2),
        priority: row.get(3),
    })
}

fn to_quantities(row: &Row, from: usize) -> Quantities {
    Quantities {
        on_hand: row.get(from),
        reserved: row.get(from + 1),
        pending_return: row.get(from + 2),
        written_off: row.get(from + 3),
    }
}

fn to_inbound(row: &Row) -> Result<InboundLine, StoreError> {
    Ok(InboundLine {
        po_id: parse_id(row.get(0), PoId::parse)?,
        sku: parse_id(row.get(1), Sku::parse)?,
        location: parse_id(row.get(2), LocationId::parse)?,
        qty: row.get(3),
        eta: row.get::<_, Option<NaiveDate>>(4),
        confirmed: row.get(5),
    })
}

/// Stock views of `skus`, in the order given.
async fn stock_views(client: &Client, skus: &[String]) -> Result<Vec<StockView>, StoreError> {
    let rows = client.query(hot::PG_STOCK_VIEWS, &[&skus]).await?;
    let mut by_sku: HashMap<String, Vec<(Location, Quantities)>> = HashMap::new();
    for row in &rows {
        by_sku
            .entry(row.get(8))
            .or_default()
            .push((to_location(row)?, to_quantities(row, 4)));
    }
    let inbound_rows = client.query(hot::PG_INBOUND_OF, &[&skus]).await?;
    let mut inbound: HashMap<String, Vec<InboundLine>> = HashMap::new();
    for row in &inbound_rows {
        let line = to_inbound(row)?;
        inbound
            .entry(line.sku.as_str().to_string())
            .or_default()
            .push(line);
    }
    skus.iter()
        .map(|sku| {
            Ok(stock_view(
                parse_id(sku.clone(), Sku::parse)?,
                by_sku.get(sku).map_or(&[][..], Vec::as_slice),
                inbound.get(sku).map_or(&[][..], Vec::as_slice),
            ))
        })
        .collect()
}

#[async_trait]
impl Store for PgStore {
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
        let rows = variants.len() as u64;
        let summary = self.writer.upsert_variants(variants).await?;
        self.keep_statistics(&["variants"], rows).await;
        Ok(summary)
    }

    async fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_opt(
                "SELECT id, name, sellable, priority FROM locations WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        row.as_ref().map(to_location).transpose()
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                "SELECT id, name, sellable, priority FROM locations ORDER BY priority, id",
                &[],
            )
            .await?;
        rows.iter().map(to_location).collect()
    }

    async fn variant(&self, sku: &Sku) -> Result<Option<Variant>, StoreError> {
        let client = self.reader().await?;
        let row = client.query_opt(hot::PG_VARIANT, &[&sku.as_str()]).await?;
        Ok(row.map(|r| Variant {
            sku: sku.clone(),
            title: r.get(0),
            product_id: r.get(1),
            gtin: r.get(2),
        }))
    }

    async fn stock(&self, sku: &Sku) -> Result<Option<StockView>, StoreError> {
        let client = self.reader().await?;
        let exists = client
            .query_opt("SELECT 1 FROM variants WHERE sku = $1", &[&sku.as_str()])
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let mut views = stock_views(&client, &[sku.as_str().to_string()]).await?;
        Ok(views.pop())
    }

    async fn stock_page(
        &self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<StockView>, StoreError> {
        let client = self.reader().await?;
        let after = after.map_or("", |s| s.as_str());
        let skus: Vec<String> = client
            .query(&pg(hot::VARIANTS_PAGE), &[&after, &i64::from(limit)])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        stock_views(&client, &skus).await
    }

    async fn ledger(&self, query: &LedgerQuery) -> Result<Vec<LedgerRow>, StoreError> {
        let client = self.reader().await?;
        const COLUMNS: &str = "l.seq, l.key, l.type, l.occurred_at, l.received_at, l.source, l.event, l.changes, l.notes";
        let after = query.after_seq as i64;
        let limit = i64::from(query.limit);
        let rows = match &query.sku {
            Some(sku) => {
                client
                    .query(
                        &format!("SELECT {COLUMNS} FROM ledger_skus s JOIN ledger l ON l.seq = s.seq WHERE s.sku = $1 AND s.seq > $2 ORDER BY s.seq LIMIT $3"),
                        &[&sku.as_str(), &after, &limit],
                    )
                    .await?
            }
            None => {
                client
                    .query(
                        &format!("SELECT {COLUMNS} FROM ledger l WHERE l.seq > $1 ORDER BY l.seq LIMIT $2"),
                        &[&after, &limit],
                    )
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                rows::ledger_row(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get::<_, Option<DateTime<Utc>>>(3),
                    r.get(4),
                    r.get(5),
                    serde_json::from_str(r.get(6))?,
                    serde_json::from_str(r.get(7))?,
                    serde_json::from_str(r.get(8))?,
                )
            })
            .collect()
    }

    async fn quarantine(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<QuarantineRow>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                "SELECT id, key, type, status, reason, received_at, event FROM quarantine
                 WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after_id, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineRow {
                    id: r.get(0),
                    key: r.get(1),
                    kind: r.get(2),
                    status: r.get(3),
                    reason: r.get(4),
                    received_at: r.get(5),
                    event: serde_json::from_str(r.get(6))?,
                })
            })
            .collect()
    }

    async fn returns(
        &self,
        status: Option<stockd_core::returns::ReturnStatus>,
        after: Option<&stockd_core::RmaId>,
        limit: u32,
    ) -> Result<Vec<stockd_core::returns::ReturnView>, StoreError> {
        let client = self.reader().await?;
        let after = after.map_or("", |a| a.as_str());
        let ids: Vec<String> = client
            .query(
                &crate::outbox::pg(rows::return_ids_sql(status)),
                &[&after, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let rows = client
            .query(
                "SELECT rma_id, sku, location, received_qty, sellable_qty, unsellable_qty
                 FROM returns WHERE rma_id = ANY($1) ORDER BY rma_id, position",
                &[&ids],
            )
            .await?;
        let mut views: Vec<(String, Vec<stockd_core::returns::ReturnLine>)> = Vec::new();
        for row in &rows {
            let rma_id: String = row.get(0);
            let line =
                rows::return_line(row.get(1), row.get(2), [row.get(3), row.get(4), row.get(5)])?;
            match views.last_mut() {
                Some((last, lines)) if *last == rma_id => lines.push(line),
                _ => views.push((rma_id, vec![line])),
            }
        }
        views
            .into_iter()
            .map(|(id, lines)| {
                let rma_id = parse_id(id, stockd_core::RmaId::parse)?;
                Ok(stockd_core::returns::return_view(rma_id, &lines))
            })
            .collect()
    }

    async fn order_reservations(
        &self,
        order: &stockd_core::OrderRef,
    ) -> Result<Vec<ReservationLine>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &crate::outbox::pg(rows::ORDER_RESERVATIONS_SQL),
                &[&channel_column(order), &order.order_id.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                rows::reservation_line(
                    order,
                    rows::ReservationColumns {
                        line_id: r.get(0),
                        alloc_index: r.get(1),
                        sku: r.get(2),
                        location: r.get(3),
                        qty: [r.get(4), r.get(5), r.get(6)],
                        kit: (r.get(7), r.get(8)),
                    },
                )
            })
            .collect()
    }

    async fn return_record(
        &self,
        rma_id: &stockd_core::RmaId,
    ) -> Result<Option<stockd_core::returns::ReturnView>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                "SELECT sku, location, received_qty, sellable_qty, unsellable_qty
                 FROM returns WHERE rma_id = $1 ORDER BY position",
                &[&rma_id.as_str()],
            )
            .await?;
        let lines = rows
            .iter()
            .map(|r| rows::return_line(r.get(0), r.get(1), [r.get(2), r.get(3), r.get(4)]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!lines.is_empty()).then(|| stockd_core::returns::return_view(rma_id.clone(), &lines)))
    }

    async fn refresh_desired(&self, skus: Option<Vec<Sku>>) -> Result<usize, StoreError> {
        self.writer.refresh(skus).await
    }

    async fn discard_quarantined(&self, id: i64) -> Result<bool, StoreError> {
        self.writer.discard_quarantined(id).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.reader().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
    }

    fn recompute_done(&self) -> bool {
        self.writer.recompute_done()
    }

    fn commits(&self) -> crate::commits::Commits {
        self.writer.commits.subscribe()
    }

    async fn setup_generation(&self) -> Result<i64, StoreError> {
        let client = self.reader().await?;
        Ok(client.query_one(hot::SETUP_GENERATION, &[]).await?.get(0))
    }

    fn setup_cache(&self) -> &crate::availability::SetupCache {
        &self.setup_cache
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }
}

/// Oversell rows as column arrays for one `UNNEST` insert.
#[derive(Default)]
struct OversellColumns<'a>(
    Vec<i64>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<i64>,
    Vec<DateTime<Utc>>,
);

/// The writer side: runs on the writer thread only.
struct PgBackend {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    owned_statements: HashMap<String, Statement>,
    /// The desired-state setup kept between transactions, by generation.
    setup: Option<(i64, std::sync::Arc<crate::availability::LoadedSetup>)>,
    /// Rows event groups and refreshes wrote, for the planner's statistics.
    bulk_writes: statistics::BulkWrites,
}

impl PgBackend {
    /// A prepared statement for SQL built at run time (cached by text).
    async fn statement_owned(&mut self, sql: String) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.owned_statements.get(&sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&sql).await?;
        self.owned_statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }
}

impl Backend for PgBackend {
    async fn begin(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("BEGIN").await?;
        let lock = self.statement("SELECT pg_advisory_xact_lock($1)").await?;
        if let Err(e) = self.client.execute(&lock, &[&WRITER_LOCK_ID]).await {
            self.rollback().await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("COMMIT").await?;
        // Tables that events grow are analyzed as an import's are: a stock
        // table planned as empty is scanned by every group's load.
        if let Err(e) = self.bulk_writes.analyze_stale(&self.client).await {
            tracing::warn!(error = %e, "could not analyze after event groups");
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        if let Err(e) = self.client.batch_execute("ROLLBACK").await {
            tracing::warn!(error = %e, "postgres rollback failed");
        }
    }

    async fn load(&mut self, needs: &Needs) -> Result<Loaded, StoreError> {
        // The kit graph the writer keeps (reloaded when the setup moved).
        let setup = crate::outbox::current_setup(self).await?;
        let stmt = self
            .statement("SELECT id, name, sellable, priority FROM locations")
            .await?;
        let locations = self
            .client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(to_location)
            .collect::<Result<Vec<_>, _>>()?;
        let mut book = Book::new(locations);

        let keys: Vec<&str> = needs.keys.iter().map(|k| k.as_str()).collect();
        let stmt = self.statement(hot::PG_IDEMPOTENCY).await?;
        let mut records = HashMap::with_capacity(keys.len());
        for row in self.client.query(&stmt, &[&keys]).await? {
            let key = parse_id(row.get(0), stockd_core::IdempotencyKey::parse)?;
            records.insert(key, rows::record(row.get(1), row.get(2))?);
        }

        let mut skus: Vec<String> = needs.skus.iter().map(|s| s.as_str().to_string()).collect();
        if !needs.orders.is_empty() {
            let channels: Vec<&str> = needs.orders.iter().map(channel_column).collect();
            let order_ids: Vec<&str> = needs.orders.iter().map(|o| o.order_id.as_str()).collect();
            let stmt = self
                .statement(
                    "SELECT r.channel, r.order_id, r.line_id, r.alloc_index, r.sku, r.location,
                            r.ordered_qty, r.shipped_qty, r.cancelled_qty, r.kit_sku, r.per_kit_qty
                     FROM reservations r
                     WHERE r.channel = ANY($1) AND r.order_id = ANY($2)",
                )
                .await?;
            // `= ANY` on both key columns keeps the primary-key index in
            // use whatever the statistics; pairs not asked for are dropped.
            for row in self.client.query(&stmt, &[&channels, &order_ids]).await? {
                let order = rows::order_ref(row.get(0), row.get(1))?;
                if !needs.orders.contains(&order) {
                    continue;
                }
                let sku: String = row.get(4);
                book.load_reservation(ReservationLine {
                    order,
                    line_id: parse_id(row.get(2), LineId::parse)?,
                    alloc_index: row.get(3),
                    sku: parse_id(sku.clone(), Sku::parse)?,
                    location: parse_id(row.get(5), LocationId::parse)?,
                    ordered_qty: row.get(6),
                    shipped_qty: row.get(7),
                    cancelled_qty: row.get(8),
                    kit: rows::kit_part(row.get(9), row.get(10))?,
                });
                skus.push(sku);
            }
        }
        if !needs.rmas.is_empty() {
            let rma_ids: Vec<&str> = needs.rmas.iter().map(|r| r.as_str()).collect();
            let stmt = self
                .statement(
                    "SELECT rma_id, sku, location, received_qty, sellable_qty, unsellable_qty
                     FROM returns WHERE rma_id = ANY($1) ORDER BY rma_id, position",
                )
                .await?;
            let mut returns: Vec<(String, Vec<stockd_core::returns::ReturnLine>)> = Vec::new();
            for row in self.client.query(&stmt, &[&rma_ids]).await? {
                let rma_id: String = row.get(0);
                let sku: String = row.get(1);
                skus.push(sku.clone());
                let line =
                    rows::return_line(sku, row.get(2), [row.get(3), row.get(4), row.get(5)])?;
                match returns.last_mut() {
                    Some((last, lines)) if *last == rma_id => lines.push(line),
                    _ => returns.push((rma_id, vec![line])),
                }
            }
            for (rma_id, lines) in returns {
                book.load_returns(parse_id(rma_id, stockd_core::RmaId::parse)?, lines);
            }
        }
        // Kits named by the events (an order for one reserves its
        // components), from the kit graph the writer keeps.
        let graph = &setup.setup.graph;
        for kit in needs.skus.iter().filter(|sku| graph.is_kit(sku)) {
            let components: Vec<(Sku, i64)> = graph
                .components(kit)
                .iter()
                .map(|c| (c.sku.clone(), i64::from(c.qty)))
                .collect();
            skus.extend(components.iter().map(|(sku, _)| sku.as_str().to_string()));
            book.load_kit(kit.clone(), components);
        }
        skus.sort();
        skus.dedup();

        let stmt = self.statement(hot::PG_LOAD_VARIANTS).await?;
        for row in self.client.query(&stmt, &[&skus]).await? {
            book.load_variant(parse_id(row.get(0), Sku::parse)?);
        }
        let stmt = self.statement(hot::PG_LOAD_STOCK).await?;
        for row in self.client.query(&stmt, &[&skus]).await? {
            book.load_stock(
                StockKey {
                    sku: parse_id(row.get(0), Sku::parse)?,
                    location: parse_id(row.get(1), LocationId::parse)?,
                },
                to_quantities(&row, 2),
            );
        }

        if !needs.inbound.is_empty() {
            let po_ids: Vec<&str> = needs.inbound.iter().map(|k| k.po_id.as_str()).collect();
            let skus: Vec<&str> = needs.inbound.iter().map(|k| k.sku.as_str()).collect();
            let locations: Vec<&str> = needs.inbound.iter().map(|k| k.location.as_str()).collect();
            let stmt = self
                .statement(
                    "SELECT po_id, sku, location, qty, eta, confirmed FROM inbound
                     WHERE po_id = ANY($1) AND sku = ANY($2) AND location = ANY($3)",
                )
                .await?;
            for row in self
                .client
                .query(&stmt, &[&po_ids, &skus, &locations])
                .await?
            {
                let line = to_inbound(&row)?;
                if needs.inbound.contains(&line.key()) {
                    book.load_inbound(line);
                }
            }
        }

        let stmt = self
            .statement("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger")
            .await?;
        let next_seq: i64 = self.client.query_one(&stmt, &[]).await?.get(0);
        Ok(Loaded {
            book,
            keys: records,
            next_seq: next_seq as u64,
        })
    }

    async fn write(&mut self, book: &Book, writes: &GroupWrites) -> Result<(), StoreError> {
        self.bulk_writes
            .count(statistics::EVENT_TABLES, writes.ledger.len() as u64);
        // Stock rows.
        let changed: Vec<_> = book.changed_stock().collect();
        if !changed.is_empty() {
            let skus: Vec<&str> = changed.iter().map(|(k, _)| k.sku.as_str()).collect();
            let locations: Vec<&str> = changed.iter().map(|(k, _)| k.location.as_str()).collect();
            let on_hand: Vec<i64> = changed.iter().map(|(_, q)| q.on_hand).collect();
            let reserved: Vec<i64> = changed.iter().map(|(_, q)| q.reserved).collect();
            let pending: Vec<i64> = changed.iter().map(|(_, q)| q.pending_return).collect();
            let written_off: Vec<i64> = changed.iter().map(|(_, q)| q.written_off).collect();
            let stmt = self
                .statement(
                    "INSERT INTO stock (sku, location, on_hand, reserved, pending_return, written_off)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
                     ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand,
                       reserved = EXCLUDED.reserved, pending_return = EXCLUDED.pending_return,
                       written_off = EXCLUDED.written_off",
                )
                .await?;
            self.client
                .execute(
                    &stmt,
                    &[
                        &skus,
                        &locations,
                        &on_hand,
                        &reserved,
                        &pending,
                        &written_off,
                    ],
                )
                .await?;
        }

        // Lines of RMAs.
        let lines: Vec<(&stockd_core::RmaId, i64, &stockd_core::returns::ReturnLine)> = book
            .changed_returns()
            .flat_map(|(rma_id, lines)| {
                lines
                    .iter()
                    .enumerate()
                    .map(move |(i, l)| (rma_id, i as i64, l))
            })
            .collect();
        if !lines.is_empty() {
            let rma_ids: Vec<&str> = lines.iter().map(|(r, _, _)| r.as_str()).collect();
            let positions: Vec<i64> = lines.iter().map(|(_, i, _)| *i).collect();
            let skus: Vec<&str> = lines.iter().map(|(_, _, l)| l.sku.as_str()).collect();
            let locations: Vec<&str> = lines.iter().map(|(_, _, l)| l.location.as_str()).collect();
            let received: Vec<i64> = lines.iter().map(|(_, _, l)| l.received_qty).collect();
            let sellable: Vec<i64> = lines.iter().map(|(_, _, l)| l.sellable_qty).collect();
            let unsellable: Vec<i64> = lines.iter().map(|(_, _, l)| l.unsellable_qty).collect();
            let stmt = self
                .statement(
                    "INSERT INTO returns (rma_id, position, sku, location, received_qty,
                       sellable_qty, unsellable_qty)
                     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[],
                       $5::int8[], $6::int8[], $7::int8[])
                     ON CONFLICT (rma_id, position) DO UPDATE SET
                       received_qty = EXCLUDED.received_qty, sellable_qty = EXCLUDED.sellable_qty,
                       unsellable_qty = EXCLUDED.unsellable_qty",
                )
                .await?;
            self.client
                .execute(
                    &stmt,
                    &[
                        &rma_ids,
                        &positions,
                        &skus,
                        &locations,
                        &received,
                        &sellable,
                        &unsellable,
                    ],
                )
                .await?;
        }

        // Reservations.
        let lines: Vec<(&stockd_core::OrderRef, &ReservationLine)> = book
            .changed_orders()
            .flat_map(|(order, lines)| lines.iter().map(move |l| (order, l)))
            .collect();
        if !lines.is_empty() {
            let channels: Vec<&str> = lines.iter().map(|(o, _)| channel_column(o)).collect();
            let order_ids: Vec<&str> = lines.iter().map(|(o, _)| o.order_id.as_str()).collect();
            let line_ids: Vec<&str> = lines.iter().map(|(_, l)| l.line_id.as_str()).collect();
            let alloc: Vec<i32> = lines.iter().map(|(_, l)| l.alloc_index).collect();
            let skus: Vec<&str> = lines.iter().map(|(_, l)| l.sku.as_str()).collect();
            let locations: Vec<&str> = lines.iter().map(|(_, l)| l.location.as_str()).collect();
            let ordered: Vec<i64> = lines.iter().map(|(_, l)| l.ordered_qty).collect();
            let shipped: Vec<i64> = lines.iter().map(|(_, l)| l.shipped_qty).collect();
            let cancelled: Vec<i64> = lines.iter().map(|(_, l)| l.cancelled_qty).collect();
            let kit_skus: Vec<Option<&str>> = lines
                .iter()
                .map(|(_, l)| l.kit.as_ref().map(|k| k.kit_sku.as_str()))
                .collect();
            let per_kit: Vec<Option<i64>> = lines
                .iter()
                .map(|(_, l)| l.kit.as_ref().map(|k| k.per_kit_qty))
                .collect();
            let stmt = self
                .statement(
                    "INSERT INTO reservations (channel, order_id, line_id, alloc_index, sku, location,
                       ordered_qty, shipped_qty, cancelled_qty, kit_sku, per_kit_qty)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[],
                       $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::text[], $11::int8[])
                     ON CONFLICT (channel, order_id, line_id, alloc_index) DO UPDATE SET
                       ordered_qty = EXCLUDED.ordered_qty, shipped_qty = EXCLUDED.shipped_qty,
                       cancelled_qty = EXCLUDED.cancelled_qty",
                )
                .await?;
            self.client
                .execute(
                    &stmt,
                    &[
                        &channels, &order_ids, &line_ids, &alloc, &skus, &locations, &ordered,
                        &shipped, &cancelled, &kit_skus, &per_kit,
                    ],
                )
                .await?;
        }

        // Inbound lines.
        let inbound: Vec<&InboundLine> = book.changed_inbound().collect();
        if !inbound.is_empty() {
            let po_ids: Vec<&str> = inbound.iter().map(|l| l.po_id.as_str()).collect();
            let skus: Vec<&str> = inbound.iter().map(|l| l.sku.as_str()).collect();
            let locations: Vec<&str> = inbound.iter().map(|l| l.location.as_str()).collect();
            let qty: Vec<i64> = inbound.iter().map(|l| l.qty).collect();
            let eta: Vec<Option<NaiveDate>> = inbound.iter().map(|l| l.eta).collect();
            let confirmed: Vec<bool> = inbound.iter().map(|l| l.confirmed).collect();
            let stmt = self
                .statement(
                    "INSERT INTO inbound (po_id, sku, location, qty, eta, confirmed)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::date[], $6::bool[])
                     ON CONFLICT (po_id, sku, location) DO UPDATE SET qty = EXCLUDED.qty,
                       eta = EXCLUDED.eta, confirmed = EXCLUDED.confirmed",
                )
                .await?;
            self.client
                .execute(&stmt, &[&po_ids, &skus, &locations, &qty, &eta, &confirmed])
                .await?;
        }

        // Idempotency records.
        let records = writer::last_per_key(writes);
        let mut upsert_keys = Vec::new();
        let mut upsert_hashes: Vec<&[u8]> = Vec::new();
        let mut upsert_results = Vec::new();
        let mut delete_keys = Vec::new();
        for (key, record) in records {
            match record {
                Some(record) => {
                    upsert_keys.push(key.as_str());
                    upsert_hashes.push(&record.payload_hash.0[..]);
                    upsert_results.push(serde_json::to_string(&record.result)?);
                }
                None => delete_keys.push(key.as_str()),
            }
        }
        if !upsert_keys.is_empty() {
            let stmt = self
                .statement(
                    "INSERT INTO idempotency (key, payload_hash, result)
                     SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS t(k, h, r)
                     ON CONFLICT (key) DO UPDATE SET payload_hash = EXCLUDED.payload_hash,
                       result = EXCLUDED.result",
                )
                .await?;
            self.client
                .execute(&stmt, &[&upsert_keys, &upsert_hashes, &upsert_results])
                .await?;
        }
        if !delete_keys.is_empty() {
            let stmt = self
                .statement("DELETE FROM idempotency WHERE key = ANY($1)")
                .await?;
            self.client.execute(&stmt, &[&delete_keys]).await?;
        }

        // Ledger, its SKU index and oversells.
        if !writes.ledger.is_empty() {
            let mut seqs = Vec::new();
            let mut keys = Vec::new();
            let mut kinds = Vec::new();
            let mut occurred = Vec::new();
            let mut received = Vec::new();
            let mut sources = Vec::new();
            let mut events = Vec::new();
            let mut changes = Vec::new();
            let mut notes = Vec::new();
            let mut sku_rows: (Vec<String>, Vec<i64>) = (Vec::new(), Vec::new());
            let mut over = OversellColumns::default();
            for entry in &writes.ledger {
                let columns = rows::ledger_columns(entry)?;
                let seq = entry.seq as i64;
                seqs.push(seq);
                keys.push(entry.event.key.as_str());
                kinds.push(entry.event.kind.type_name());
                occurred.push(entry.event.occurred_at);
                received.push(entry.received_at);
                sources.push(entry.event.source.as_deref());
                events.push(columns.event);
                changes.push(columns.changes);
                notes.push(columns.notes);
                for sku in columns.skus {
                    sku_rows.0.push(sku);
                    sku_rows.1.push(seq);
                }
                if let Some(order) = entry.event.kind.order_ref() {
                    for (line_id, sku, location, shortfall) in rows::oversells(entry) {
                        over.0.push(seq);
                        over.1.push(channel_column(order));
                        over.2.push(order.order_id.as_str());
                        over.3.push(line_id);
                        over.4.push(sku);
                        over.5.push(location);
                        over.6.push(shortfall);
                        over.7.push(entry.received_at);
                    }
                }
            }
            let stmt = self
                .statement(
                    "INSERT INTO ledger (seq, key, type, occurred_at, received_at, source, event, changes, notes)
                     SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::timestamptz[],
                                          $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[])",
                )
                .await?;
            self.client
                .execute(
                    &stmt,
                    &[
                        &seqs, &keys, &kinds, &occurred, &received, &sources, &events, &changes,
                        &notes,
                    ],
                )
                .await?;
            let stmt = self
                .statement(
                    "INSERT INTO ledger_skus (sku, seq) SELECT * FROM UNNEST($1::text[], $2::int8[])",
                )
                .await?;
            self.client
                .execute(&stmt, &[&sku_rows.0, &sku_rows.1])
                .await?;
            if !over.0.is_empty() {
                let stmt = self
                    .statement(
                        "INSERT INTO oversells (seq, channel, order_id, line_id, sku, location, shortfall_qty, received_at)
                         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                                              $6::text[], $7::int8[], $8::timestamptz[])",
                    )
                    .await?;
                self.client
                    .execute(
                        &stmt,
                        &[
                            &over.0, &over.1, &over.2, &over.3, &over.4, &over.5, &over.6, &over.7,
                        ],
                    )
                    .await?;
            }
        }

        // Quarantine.
        if !writes.quarantined.is_empty() {
            let q = &writes.quarantined;
            let keys: Vec<&str> = q.iter().map(|e| e.event.key.as_str()).collect();
            let kinds: Vec<&str> = q.iter().map(|e| e.event.kind.type_name()).collect();
            let reasons: Vec<String> = q.iter().map(|e| e.awaiting.reason()).collect();
            let wait_keys: Vec<String> = q.iter().map(|e| e.awaiting.wait_key()).collect();
            let hashes: Vec<&[u8]> = q.iter().map(|e| &e.payload_hash.0[..]).collect();
            let events = q
                .iter()
                .map(|e| serde_json::to_string(&e.event))
                .collect::<Result<Vec<_>, _>>()?;
            let received: Vec<DateTime<Utc>> = q.iter().map(|e| e.received_at).collect();
            let stmt = self
                .statement(
                    "INSERT INTO quarantine (key, type, status, reason, wait_key, payload_hash, event, received_at)
                     SELECT k, t, 'waiting', r, w, h, e, at
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[],
                                 $7::timestamptz[]) WITH ORDINALITY AS x(k, t, r, w, h, e, at, n)
                     ORDER BY n",
                )
                .await?;
            self.client
                .execute(
                    &stmt,
                    &[
                        &keys, &kinds, &reasons, &wait_keys, &hashes, &events, &received,
                    ],
                )
                .await?;
        }
        for outcome in &writes.replayed {
            match outcome {
                ReplayOutcome::Applied { id, .. } => {
                    let stmt = self
                        .statement("DELETE FROM quarantine WHERE id = $1")
                        .await?;
                    self.client.execute(&stmt, &[id]).await?;
                }
                ReplayOutcome::StillWaiting { id, awaiting } => {
                    let stmt = self
                        .statement("UPDATE quarantine SET reason = $2, wait_key = $3 WHERE id = $1")
                        .await?;
                    self.client
                        .execute(&stmt, &[id, &awaiting.reason(), &awaiting.wait_key()])
                        .await?;
                }
                ReplayOutcome::Rejected { id, error } => {
                    let stmt = self
                        .statement(
                            "UPDATE quarantine SET status = 'rejected', reason = $2 WHERE id = $1",
                        )
                        .await?;
                    self.client
                        .execute(&stmt, &[id, &format!("{}: {error}", error.code())])
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn upsert_location(&mut self, location: &Location) -> Result<(), StoreError> {
        let stmt = self
            .statement(
                "INSERT INTO locations (id, name, sellable, priority) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, sellable = EXCLUDED.sellable,
                   priority = EXCLUDED.priority",
            )
            .await?;
        self.client
            .execute(
                &stmt,
                &[
                    &location.id.as_str(),
                    &location.name,
                    &location.sellable,
                    &location.priority,
                ],
            )
            .await?;
        let bump = self.statement(hot::BUMP_SETUP).await?;
        self.client.execute(&bump, &[]).await?;
        Ok(())
    }

    async fn upsert_variants(&mut self, variants: &[Variant]) -> Result<(), StoreError> {
        // The last of several entries for one SKU wins, as it would row by row.
        let mut latest: HashMap<&str, &Variant> = HashMap::new();
        for v in variants {
            latest.insert(v.sku.as_str(), v);
        }
        let unique: Vec<&Variant> = latest.into_values().collect();
        let stmt = self
            .statement(
                "INSERT INTO variants (sku, title, product_id, gtin)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (sku) DO UPDATE SET title = EXCLUDED.title,
                   product_id = EXCLUDED.product_id, gtin = EXCLUDED.gtin",
            )
            .await?;
        for chunk in unique.chunks(10_000) {
            let skus: Vec<&str> = chunk.iter().map(|v| v.sku.as_str()).collect();
            let titles: Vec<Option<&str>> = chunk.iter().map(|v| v.title.as_deref()).collect();
            let products: Vec<Option<&str>> =
                chunk.iter().map(|v| v.product_id.as_deref()).collect();
            let gtins: Vec<Option<&str>> = chunk.iter().map(|v| v.gtin.as_deref()).collect();
            self.client
                .execute(&stmt, &[&skus, &titles, &products, &gtins])
                .await?;
        }
        Ok(())
    }

    async fn waiting_keys(&mut self) -> Result<Vec<String>, StoreError> {
        let stmt = self
            .statement("SELECT DISTINCT wait_key FROM quarantine WHERE status = 'waiting'")
            .await?;
        Ok(self
            .client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn waiting_for(
        &mut self,
        wait_keys: &[String],
        limit: usize,
    ) -> Result<Vec<Quarantined>, StoreError> {
        let stmt = self
            .statement(
                "SELECT id, payload_hash, event FROM quarantine
                 WHERE status = 'waiting' AND wait_key = ANY($1) ORDER BY id LIMIT $2",
            )
            .await?;
        let rows = self
            .client
            .query(&stmt, &[&wait_keys, &(limit as i64)])
            .await?;
        rows.iter()
            .map(|r| {
                let event: &str = r.get(2);
                rows::quarantined(r.get(0), r.get(1), serde_json::from_str(event)?)
            })
            .collect()
    }

    async fn discard_quarantined(&mut self, id: i64) -> Result<bool, StoreError> {
        let stmt = self
            .statement("DELETE FROM quarantine WHERE id = $1 RETURNING key")
            .await?;
        let Some(row) = self.client.query_opt(&stmt, &[&id]).await? else {
            return Ok(false);
        };
        let key: String = row.get(0);
        let stmt = self
            .statement(
                "DELETE FROM idempotency WHERE key = $1 AND result::jsonb->>'status' = 'quarantined'",
            )
            .await?;
        self.client.execute(&stmt, &[&key]).await?;
        Ok(true)
    }
}
