//! Channel order changes that map to no listing of their channel: kept (not
//! dropped) until a listing makes them map, then replayed and taken. These
//! rows never touch quantities, so they are written on pooled connections,
//! outside the event writer.

use crate::inbound::{from_ms, ms};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use stockd_core::ChannelId;

/// An order change (or the part of it) whose lines name no listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmappedChange {
    pub channel: ChannelId,
    /// The change's deduplication key (unique per channel).
    pub dedup_key: String,
    pub order_id: String,
    /// `placed`, `cancelled`, `restocked` or `refunded`.
    pub kind: String,
    /// The channel's ids of the item of each line (`[[key, value], …]` per line).
    pub item_keys: serde_json::Value,
    /// The normalised change as received, replayed as is.
    pub change: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// A kept unmapped change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmappedRow {
    pub id: i64,
    #[serde(flatten)]
    pub change: UnmappedChange,
}

#[async_trait]
pub trait UnmappedStore: Send + Sync {
    /// Keeps an unmapped change; a second record of the same channel and
    /// dedup key (a redelivery) keeps the first. Returns its id.
    async fn record_unmapped(&self, change: UnmappedChange) -> Result<i64, StoreError>;
    /// Kept changes of `channel` in id order (the order they came), after `after_id`.
    async fn unmapped(
        &self,
        channel: &ChannelId,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<UnmappedRow>, StoreError>;
    /// Removes a kept change (it was applied); false when already gone.
    async fn take_unmapped(&self, id: i64) -> Result<bool, StoreError>;
}

/// The SQL of both adapters, with `?N` placeholders (PostgreSQL's `$N`
/// after `dialect_pg`).
pub(crate) const INSERT_UNMAPPED: &str = "INSERT INTO unmapped_channel_lines
    (channel, dedup_key, order_id, kind, item_keys, change_json, received_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (channel, dedup_key) DO NOTHING";
pub(crate) const UNMAPPED_ID: &str =
    "SELECT id FROM unmapped_channel_lines WHERE channel = ?1 AND dedup_key = ?2";
pub(crate) const SELECT_UNMAPPED: &str = "SELECT id, channel, dedup_key, order_id, kind,
    item_keys, change_json, received_at_ms FROM unmapped_channel_lines
    WHERE channel = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
pub(crate) const DELETE_UNMAPPED: &str = "DELETE FROM unmapped_channel_lines WHERE id = ?1";

/// The columns of one row, in `SELECT_UNMAPPED` order.
pub(crate) type UnmappedColumns = (i64, String, String, String, String, String, String, i64);

pub(crate) fn row_from_columns(c: UnmappedColumns) -> Result<UnmappedRow, StoreError> {
    let channel = ChannelId::parse(c.1.clone())
        .map_err(|e| StoreError::Corrupt(format!("unmapped channel {:?}: {e}", c.1)))?;
    Ok(UnmappedRow {
        id: c.0,
        change: UnmappedChange {
            channel,
            dedup_key: c.2,
            order_id: c.3,
            kind: c.4,
            item_keys: serde_json::from_str(&c.5)?,
            change: serde_json::from_str(&c.6)?,
            received_at: from_ms(c.7)?,
        },
    })
}

/// The values of `INSERT_UNMAPPED`, JSON as text.
pub(crate) fn insert_values(c: &UnmappedChange) -> (String, String, i64) {
    (
        c.item_keys.to_string(),
        c.change.to_string(),
        ms(c.received_at),
    )
}
