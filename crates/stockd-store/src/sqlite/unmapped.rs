//! SQLite side of `UnmappedStore`: single statements on pooled connections.

use super::SqliteStore;
use crate::unmapped::{
    insert_values, row_from_columns, UnmappedChange, UnmappedRow, UnmappedStore, DELETE_UNMAPPED,
    INSERT_UNMAPPED, SELECT_UNMAPPED, UNMAPPED_ID,
};
use crate::StoreError;
use async_trait::async_trait;
use rusqlite::params;
use stockd_core::ChannelId;

#[async_trait]
impl UnmappedStore for SqliteStore {
    async fn record_unmapped(&self, c: UnmappedChange) -> Result<i64, StoreError> {
        self.read(move |conn| {
            let (item_keys, change, received_at_ms) = insert_values(&c);
            conn.prepare_cached(INSERT_UNMAPPED)?.execute(params![
                c.channel.as_str(),
                c.dedup_key,
                c.order_id,
                c.kind,
                item_keys,
                change,
                received_at_ms
            ])?;
            Ok(conn
                .prepare_cached(UNMAPPED_ID)?
                .query_row(params![c.channel.as_str(), c.dedup_key], |r| r.get(0))?)
        })
        .await
    }

    async fn unmapped(
        &self,
        channel: &ChannelId,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<UnmappedRow>, StoreError> {
        let channel = channel.as_str().to_string();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(SELECT_UNMAPPED)?
                .query_map(params![channel, after_id, i64::from(limit)], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(row_from_columns).collect()
        })
        .await
    }

    async fn take_unmapped(&self, id: i64) -> Result<bool, StoreError> {
        self.read(move |conn| Ok(conn.prepare_cached(DELETE_UNMAPPED)?.execute([id])? > 0))
            .await
    }
}
