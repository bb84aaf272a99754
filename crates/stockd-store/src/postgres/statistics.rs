//! Planner statistics after bulk catalog writes. PostgreSQL plans
//! `sku = ANY($1)` reads from its statistics; a table filled by an import
//! and not analyzed since is planned as if it were small, and every
//! availability read of it (a listings page, the refresh of the next
//! chunk) scans the whole table: 44 ms for a page at 500,000 listings, and
//! more with every row. Autovacuum would analyze it later, or never where it
//! is off, so an import analyzes the tables it grew itself, once the rows it
//! wrote since the last analysis reach half of what the planner believes is
//! there (a handful of `ANALYZE` runs for a catalog of millions).

use crate::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_postgres::GenericClient;

/// Rows written below this count never trigger an analysis by themselves.
const ROWS_MIN: u64 = 10_000;

/// The tables an event group grows (one row or more per event).
pub(crate) const EVENT_TABLES: &[&str] = &[
    "idempotency",
    "ledger",
    "ledger_skus",
    "stock",
    "stock_publish",
];

#[derive(Default, Clone, Copy)]
struct Table {
    /// Rows written since this process last analyzed the table.
    written: u64,
    /// Rows the planner believed were there when last asked (`reltuples`).
    believed: Option<f64>,
}

/// Rows each table received from bulk writes since this process last
/// analyzed it.
#[derive(Default)]
pub(crate) struct BulkWrites(Mutex<HashMap<&'static str, Table>>);

impl BulkWrites {
    /// Counts `rows` written to each of `tables`.
    pub(crate) fn count(&self, tables: &[&'static str], rows: u64) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for table in tables {
            counts.entry(table).or_default().written += rows;
        }
    }

    /// Counts `rows` written to each of `tables`, and analyzes the tables
    /// whose statistics the counted writes have made stale.
    pub(crate) async fn wrote<C: GenericClient>(
        &self,
        client: &C,
        tables: &[&'static str],
        rows: u64,
    ) -> Result<(), StoreError> {
        self.count(tables, rows);
        self.analyze_stale(client).await
    }

    /// Analyzes the tables whose statistics the counted writes have made
    /// stale. Outside a transaction; asks for a table's planner belief only
    /// once its writes pass `ROWS_MIN` and again after analyzing it.
    pub(crate) async fn analyze_stale<C: GenericClient>(
        &self,
        client: &C,
    ) -> Result<(), StoreError> {
        let candidates: Vec<(&'static str, Table)> = {
            let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
            counts
                .iter()
                .filter(|(_, t)| t.written >= ROWS_MIN)
                .map(|(name, t)| (*name, *t))
                .collect()
        };
        for (table, seen) in candidates {
            let believed = match seen.believed {
                Some(rows) => rows,
                None => believed_rows(client, table).await?,
            };
            let analyzed = if stale(seen.written, believed) {
                // Table names come from this crate, never from input.
                client.batch_execute(&format!("ANALYZE {table}")).await?;
                tracing::debug!(table, written = seen.written, "analyzed after bulk writes");
                Some(believed_rows(client, table).await?)
            } else {
                None
            };
            let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let entry = counts.entry(table).or_default();
            match analyzed {
                Some(rows) => {
                    // Writes counted while analyzing stay counted.
                    entry.written = entry.written.saturating_sub(seen.written);
                    entry.believed = Some(rows);
                }
                None => entry.believed = Some(believed),
            }
        }
        Ok(())
    }
}

/// The planner's row estimate of `table`; -1 (never analyzed) and 0 both
/// mean "believed empty".
async fn believed_rows<C: GenericClient>(client: &C, table: &str) -> Result<f64, StoreError> {
    let rows: f32 = client
        .query_one(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await?
        .get(0);
    Ok(f64::from(rows))
}

/// Whether `written` rows since the last analysis make the planner's
/// belief of `believed` rows too far off.
fn stale(written: u64, believed: f64) -> bool {
    written >= ROWS_MIN && written as f64 >= believed.max(0.0) * 0.5
}

#[cfg(test)]
mod tests {
    use super::stale;
    use stockd_core::Sku;

    /// After an import of 20,000 variants and listings and 12,000 receipts,
    /// PostgreSQL plans a page's reads by index, as it would once autovacuum
    /// caught up (off on some servers): with the tables never analyzed it
    /// scans them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_import_leaves_reads_planned_by_index() {
        let Some(url) = crate::test_support::fresh_postgres_url("bulk_import_statistics").await
        else {
            return;
        };
        let store = crate::open(&url).await.unwrap();
        let skus: Vec<Sku> = (0..20_000)
            .map(|i| Sku::parse(format!("SKU-{i:06}")).unwrap())
            .collect();
        crate::test_support::list_on_shopify(&*store, "shop", &skus)
            .await
            .unwrap();
        // Receipts on 12,000 of them: the tables events grow (stock first).
        store
            .upsert_location(stockd_core::Location {
                id: stockd_core::LocationId::parse("AMS").unwrap(),
                name: "AMS warehouse".into(),
                sellable: true,
                priority: 1,
            })
            .await
            .unwrap();
        for (batch, chunk) in skus[..12_000].chunks(2_000).enumerate() {
            let events = chunk
                .iter()
                .enumerate()
                .map(|(i, sku)| {
                    let input: stockd_core::EventInput =
                        serde_json::from_value(serde_json::json!({
                            "key": format!("r-{batch}-{i}"), "type": "receipt", "sku": sku.as_str(),
                            "location": "AMS", "qty": 5
                        }))
                        .unwrap();
                    crate::submission(stockd_core::Event::validate(&input).unwrap())
                })
                .collect();
            store.submit(events).await.unwrap().unwrap();
        }
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let page: Vec<String> = skus[10_000..10_100]
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        // A small stock table may rightly be scanned; what must hold is that
        // the planner knows its size: 100 SKUs, about 100 rows (never
        // analyzed, it guesses thousands and scans every table here).
        for (table, sql, scan_allowed) in [
            ("listings", crate::hot::PG_LISTING_KEYS_OF, false),
            ("variants", crate::hot::PG_VARIANTS, false),
            ("stock", crate::hot::PG_STOCK_OF, true),
        ] {
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN {sql}"), &[&page])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            let estimated: f64 = plan[0]
                .split("rows=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no row estimate in {}", plan[0]));
            assert!(
                estimated <= 1_000.0,
                "{table}: {estimated} rows estimated for 100 SKUs:\n{}",
                plan.join("\n")
            );
            assert!(
                scan_allowed
                    || !plan
                        .iter()
                        .any(|l| l.contains(&format!("Seq Scan on {table}"))),
                "{table} scanned after a bulk import:\n{}",
                plan.join("\n")
            );
        }
    }

    #[test]
    fn analyzes_once_writes_reach_half_the_believed_rows() {
        assert!(!stale(9_999, -1.0), "too few rows to matter");
        assert!(stale(10_000, -1.0), "never analyzed");
        assert!(stale(50_000, 0.0), "believed empty");
        assert!(!stale(400_000, 1_000_000.0));
        assert!(stale(500_000, 1_000_000.0));
    }
}
