//! PostgreSQL side of the publish outbox: the writer marks every touched SKU
//! with one statement (arrays), the publisher reads on pooled connections.

use super::{PgBackend, PgStore};
use crate::inbound::dialect_pg;
use crate::publish::{PublishStore, StockChange, StockChanges, DUE, PUBLISHED};
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use stockd_core::{ChannelId, Sku};

const MARK_MANY: &str = "INSERT INTO stock_publish (sku, gen, caused_seq, changed_at_ms)
    SELECT u.sku, 1, u.seq, $3 FROM UNNEST($1::text[], $2::bigint[]) AS u(sku, seq)
    ON CONFLICT (sku) DO UPDATE SET gen = stock_publish.gen + 1,
        caused_seq = excluded.caused_seq, changed_at_ms = excluded.changed_at_ms";

impl StockChanges for PgBackend {
    async fn mark_stock_changed(
        &mut self,
        changed: &[(Sku, u64)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let skus: Vec<&str> = changed.iter().map(|(s, _)| s.as_str()).collect();
        let seqs: Vec<i64> = changed.iter().map(|(_, q)| *q as i64).collect();
        let stmt = self.statement(MARK_MANY).await?;
        self.client
            .execute(&stmt, &[&skus, &seqs, &at.timestamp_millis()])
            .await?;
        Ok(())
    }
}

#[async_trait]
impl PublishStore for PgStore {
    async fn stock_changes_due(&self, limit: u32) -> Result<Vec<StockChange>, StoreError> {
        let client = self.reader().await?;
        let due = client.query(&dialect_pg(DUE), &[&i64::from(limit)]).await?;
        let skus: Vec<String> = due.iter().map(|r| r.get(0)).collect();
        let states = client
            .query(crate::hot::PG_STATES_OF_SKUS, &[&skus])
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for row in &due {
            let sku: String = row.get(0);
            let channels = states
                .iter()
                .filter(|s| s.get::<_, &str>(0) == sku)
                .map(|s| {
                    Ok((
                        parse_id(s.get::<_, String>(1), ChannelId::parse)?,
                        serde_json::from_str(s.get::<_, &str>(2))?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.push(StockChange {
                sku: parse_id(sku, Sku::parse)?,
                gen: crate::inbound::count(row.get(1))?,
                caused_seq: crate::inbound::count(row.get(2))?,
                changed_at: crate::inbound::from_ms(row.get(3))?,
                channels,
            });
        }
        Ok(out)
    }

    async fn stock_published(&self, published: Vec<(Sku, u64)>) -> Result<(), StoreError> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await?;
        let sql = dialect_pg(PUBLISHED);
        for (sku, gen) in &published {
            tx.execute(&sql, &[&sku.as_str(), &(*gen as i64)]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
