//! SQLite side of the publish outbox.

use super::{SqliteBackend, SqliteStore};
use crate::publish::{PublishStore, StockChange, StockChanges, DUE, MARK, PUBLISHED};
use crate::rows::parse_id;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;
use stockd_core::{ChannelId, Sku};

impl StockChanges for SqliteBackend {
    async fn mark_stock_changed(
        &mut self,
        changed: &[(Sku, u64)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut mark = self.conn.prepare_cached(MARK)?;
        let at = at.timestamp_millis();
        for (sku, seq) in changed {
            mark.execute(params![sku.as_str(), *seq as i64, at])?;
        }
        Ok(())
    }
}

#[async_trait]
impl PublishStore for SqliteStore {
    async fn stock_changes_due(&self, limit: u32) -> Result<Vec<StockChange>, StoreError> {
        self.read(move |conn| {
            let due = conn
                .prepare_cached(DUE)?
                .query_map([i64::from(limit)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut states = conn.prepare_cached(crate::hot::SQLITE_STATES_OF_SKU)?;
            let mut out = Vec::with_capacity(due.len());
            for (sku, gen, seq, at) in due {
                let channels = states
                    .query_map([&sku], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .map(|(channel, desired)| {
                        Ok((
                            parse_id(channel, ChannelId::parse)?,
                            serde_json::from_str(&desired)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                out.push(StockChange {
                    sku: parse_id(sku, Sku::parse)?,
                    gen: crate::inbound::count(gen)?,
                    caused_seq: crate::inbound::count(seq)?,
                    changed_at: crate::inbound::from_ms(at)?,
                    channels,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn stock_published(&self, published: Vec<(Sku, u64)>) -> Result<(), StoreError> {
        self.read(move |conn| {
            super::channels::in_transaction(conn, |conn| {
                let mut stmt = conn.prepare_cached(PUBLISHED)?;
                for (sku, gen) in &published {
                    stmt.execute(params![sku.as_str(), *gen as i64])?;
                }
                Ok(())
            })
        })
        .await
    }
}
