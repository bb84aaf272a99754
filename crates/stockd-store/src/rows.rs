//! Mapping between core values and the flat rows both adapters store.

use crate::{LedgerRow, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use stockd_core::group::{EventResult, IdempotencyRecord, LedgerEntry};
use stockd_core::{ChannelId, Note, OrderId, OrderRef, PayloadHash};

/// Orders without a channel are stored under the empty channel.
pub(crate) fn channel_column(order: &OrderRef) -> &str {
    order.channel.as_ref().map_or("", |c| c.as_str())
}

pub(crate) fn order_ref(channel: String, order_id: String) -> Result<OrderRef, StoreError> {
    let channel = if channel.is_empty() {
        None
    } else {
        Some(ChannelId::parse(channel).map_err(corrupt)?)
    };
    Ok(OrderRef {
        channel,
        order_id: OrderId::parse(order_id).map_err(corrupt)?,
    })
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn parse_id<T>(
    raw: String,
    parse: fn(String) -> Result<T, stockd_core::ids::IdError>,
) -> Result<T, StoreError> {
    parse(raw).map_err(corrupt)
}

pub(crate) fn record(hash: &[u8], result: &str) -> Result<IdempotencyRecord, StoreError> {
    let payload_hash: [u8; 32] = hash.try_into().map_err(corrupt)?;
    let result: EventResult = serde_json::from_str(result)?;
    Ok(IdempotencyRecord {
        payload_hash: PayloadHash(payload_hash),
        result,
    })
}

/// The JSON columns of a ledger entry and the SKUs it touched.
pub(crate) struct LedgerColumns {
    pub event: String,
    pub changes: String,
    pub notes: String,
    pub skus: BTreeSet<String>,
}

pub(crate) fn ledger_columns(entry: &LedgerEntry) -> Result<LedgerColumns, StoreError> {
    let mut skus: BTreeSet<String> = entry
        .changes
        .iter()
        .map(|c| c.sku.as_str().to_string())
        .collect();
    skus.extend(
        entry
            .event
            .kind
            .skus()
            .iter()
            .map(|s| s.as_str().to_string()),
    );
    Ok(LedgerColumns {
        event: serde_json::to_string(&entry.event)?,
        changes: serde_json::to_string(&entry.changes)?,
        notes: serde_json::to_string(&entry.notes)?,
        skus,
    })
}

/// The oversell notes of an entry as (line_id, sku, location, shortfall).
pub(crate) fn oversells(entry: &LedgerEntry) -> impl Iterator<Item = (&str, &str, &str, i64)> {
    entry.notes.iter().filter_map(|note| match note {
        Note::Oversell {
            line_id,
            sku,
            location,
            shortfall_qty,
        } => Some((
            line_id.as_str(),
            sku.as_str(),
            location.as_str(),
            *shortfall_qty,
        )),
        _ => None,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ledger_row(
    seq: i64,
    key: String,
    kind: String,
    occurred_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    source: Option<String>,
    event: serde_json::Value,
    changes: serde_json::Value,
    notes: serde_json::Value,
) -> Result<LedgerRow, StoreError> {
    Ok(LedgerRow {
        seq: seq as u64,
        key,
        kind,
        occurred_at,
        received_at,
        source,
        event,
        changes: serde_json::from_value(changes)?,
        notes: serde_json::from_value(notes)?,
    })
}

pub(crate) fn parse_time(raw: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(corrupt)
}

pub(crate) fn quarantined(
    id: i64,
    hash: &[u8],
    event: stockd_core::Event,
) -> Result<stockd_core::group::Quarantined, StoreError> {
    let hash: [u8; 32] = hash.try_into().map_err(corrupt)?;
    Ok(stockd_core::group::Quarantined {
        id,
        event,
        payload_hash: PayloadHash(hash),
    })
}

/// The kit part of a reservation row from its two nullable columns.
pub(crate) fn kit_part(
    kit_sku: Option<String>,
    per_kit_qty: Option<i64>,
) -> Result<Option<stockd_core::ledger::KitPart>, StoreError> {
    match (kit_sku, per_kit_qty) {
        (Some(kit_sku), Some(per_kit_qty)) => Ok(Some(stockd_core::ledger::KitPart {
            kit_sku: parse_id(kit_sku, stockd_core::Sku::parse)?,
            per_kit_qty,
        })),
        (None, None) => Ok(None),
        _ => Err(corrupt("reservation with half a kit part")),
    }
}

/// SQL (both dialects, `?1` = after, `?2` = limit) selecting the RMA ids of a
/// page of `GET /v1/returns`, by status.
pub(crate) fn return_ids_sql(status: Option<stockd_core::returns::ReturnStatus>) -> &'static str {
    use stockd_core::returns::ReturnStatus;
    match status {
        // The partial index `returns_open` holds exactly the open lines.
        Some(ReturnStatus::Open) => {
            "SELECT DISTINCT rma_id FROM returns
             WHERE received_qty > sellable_qty + unsellable_qty AND rma_id > ?1
             ORDER BY rma_id LIMIT ?2"
        }
        Some(ReturnStatus::Closed) => {
            "SELECT rma_id FROM returns WHERE rma_id > ?1 GROUP BY rma_id
             HAVING MAX(received_qty - sellable_qty - unsellable_qty) <= 0
             ORDER BY rma_id LIMIT ?2"
        }
        None => "SELECT DISTINCT rma_id FROM returns WHERE rma_id > ?1 ORDER BY rma_id LIMIT ?2",
    }
}

/// One stored line of an RMA.
pub(crate) fn return_line(
    sku: String,
    location: String,
    [received_qty, sellable_qty, unsellable_qty]: [i64; 3],
) -> Result<stockd_core::returns::ReturnLine, StoreError> {
    Ok(stockd_core::returns::ReturnLine {
        sku: parse_id(sku, stockd_core::Sku::parse)?,
        location: parse_id(location, stockd_core::LocationId::parse)?,
        received_qty,
        sellable_qty,
        unsellable_qty,
    })
}

/// SQL (both dialects) for the reservation rows of one order.
pub(crate) const ORDER_RESERVATIONS_SQL: &str =
    "SELECT line_id, alloc_index, sku, location, ordered_qty, shipped_qty, cancelled_qty,
            kit_sku, per_kit_qty
     FROM reservations WHERE channel = ?1 AND order_id = ?2 ORDER BY line_id, alloc_index";

/// One reservation row read back with `ORDER_RESERVATIONS_SQL`.
pub(crate) struct ReservationColumns {
    pub line_id: String,
    pub alloc_index: i32,
    pub sku: String,
    pub location: String,
    pub qty: [i64; 3],
    pub kit: (Option<String>, Option<i64>),
}

pub(crate) fn reservation_line(
    order: &OrderRef,
    c: ReservationColumns,
) -> Result<stockd_core::ReservationLine, StoreError> {
    Ok(stockd_core::ReservationLine {
        order: order.clone(),
        line_id: parse_id(c.line_id, stockd_core::LineId::parse)?,
        alloc_index: c.alloc_index,
        sku: parse_id(c.sku, stockd_core::Sku::parse)?,
        location: parse_id(c.location, stockd_core::LocationId::parse)?,
        ordered_qty: c.qty[0],
        shipped_qty: c.qty[1],
        cancelled_qty: c.qty[2],
        kit: kit_part(c.kit.0, c.kit.1)?,
    })
}
