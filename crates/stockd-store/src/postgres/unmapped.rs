//! PostgreSQL side of `UnmappedStore`: single statements on pooled connections.

use super::PgStore;
use crate::inbound::dialect_pg;
use crate::unmapped::{
    insert_values, row_from_columns, UnmappedChange, UnmappedRow, UnmappedStore, DELETE_UNMAPPED,
    INSERT_UNMAPPED, SELECT_UNMAPPED, UNMAPPED_ID,
};
use crate::StoreError;
use async_trait::async_trait;
use stockd_core::ChannelId;

#[async_trait]
impl UnmappedStore for PgStore {
    async fn record_unmapped(&self, c: UnmappedChange) -> Result<i64, StoreError> {
        let client = self.reader().await?;
        let (item_keys, change, received_at_ms) = insert_values(&c);
        client
            .execute(
                &dialect_pg(INSERT_UNMAPPED),
                &[
                    &c.channel.as_str(),
                    &c.dedup_key,
                    &c.order_id,
                    &c.kind,
                    &item_keys,
                    &change,
                    &received_at_ms,
                ],
            )
            .await?;
        let row = client
            .query_one(
                &dialect_pg(UNMAPPED_ID),
                &[&c.channel.as_str(), &c.dedup_key],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn unmapped(
        &self,
        channel: &ChannelId,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<UnmappedRow>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &dialect_pg(SELECT_UNMAPPED),
                &[&channel.as_str(), &after_id, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                row_from_columns((
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                ))
            })
            .collect()
    }

    async fn take_unmapped(&self, id: i64) -> Result<bool, StoreError> {
        let client = self.reader().await?;
        Ok(client.execute(&dialect_pg(DELETE_UNMAPPED), &[&id]).await? > 0)
    }
}
