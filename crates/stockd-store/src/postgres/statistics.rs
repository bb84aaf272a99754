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

/// Rows each table received from bulk writes since this process last
/// analyzed it.
#[derive(Default)]
pub(crate) struct BulkWrites(Mutex<HashMap<&'static str, u64>>);

impl BulkWrites {
    /// Counts `rows` written to each of `tables`, and analyzes those whose
    /// statistics they have made stale.
    pub(crate) async fn wrote<C: GenericClient>(
        &self,
        client: &C,
        tables: &[&'static str],
        rows: u64,
    ) -> Result<(), StoreError> {
        let due: Vec<(&'static str, u64)> = {
            let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
            tables
                .iter()
                .map(|table| {
                    let count = counts.entry(table).or_default();
                    *count += rows;
                    (*table, *count)
                })
                .filter(|(_, count)| *count >= ROWS_MIN)
                .collect()
        };
        for (table, written) in due {
            // -1 (never analyzed) and 0 both mean "believed empty".
            let believed: f32 = client
                .query_one(
                    "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)",
                    &[&table],
                )
                .await?
                .get(0);
            if stale(written, f64::from(believed)) {
                // Table names come from this crate, never from input.
                client.batch_execute(&format!("ANALYZE {table}")).await?;
                tracing::debug!(table, written, "analyzed after bulk writes");
                let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
                counts.insert(table, 0);
            }
        }
        Ok(())
    }
}

/// Whether `written` rows since the last analysis make the planner's
/// belief of `believed` rows too far off.
fn stale(written: u64, believed: f64) -> bool {
    written >= ROWS_MIN && written as f64 >= believed.max(0.0) * 0.5
}

#[cfg(test)]
mod tests {
    use super::stale;
    use crate::{ChannelKind, ChannelRecord, ListingRecord};
    use stockd_core::{ChannelId, Sku, Variant};

    /// After an import of 20,000 variants and listings, PostgreSQL plans a
    /// page's reads by index, as it would once autovacuum caught up (off on
    /// some servers): with the tables never analyzed it scans them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_import_leaves_reads_planned_by_index() {
        let Some(url) = crate::test_support::fresh_postgres_url("bulk_import_statistics").await
        else {
            return;
        };
        let store = crate::open(&url).await.unwrap();
        let shop = ChannelId::parse("shop").unwrap();
        store
            .upsert_channel(ChannelRecord {
                id: shop.clone(),
                kind: ChannelKind::Shopify,
                locations: None,
                enabled: true,
            })
            .await
            .unwrap();
        let skus: Vec<Sku> = (0..20_000)
            .map(|i| Sku::parse(format!("SKU-{i:06}")).unwrap())
            .collect();
        for chunk in skus.chunks(5_000) {
            store
                .upsert_variants(
                    chunk
                        .iter()
                        .map(|sku| Variant {
                            sku: sku.clone(),
                            title: Some(format!("{sku} title")),
                            product_id: None,
                            gtin: None,
                        })
                        .collect(),
                )
                .await
                .unwrap();
            store
                .upsert_listings(
                    chunk
                        .iter()
                        .map(|sku| ListingRecord {
                            channel: shop.clone(),
                            sku: sku.clone(),
                            external: serde_json::from_value(
                                serde_json::json!({"inventory_item_id": format!("gid://{sku}")}),
                            )
                            .unwrap(),
                            rank: None,
                        })
                        .collect(),
                )
                .await
                .unwrap();
        }
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let page: Vec<String> = skus[10_000..10_100]
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        for (table, sql) in [
            ("listings", crate::hot::PG_LISTING_KEYS_OF),
            ("variants", crate::hot::PG_VARIANTS),
        ] {
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN {sql}"), &[&page])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            assert!(
                !plan
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
