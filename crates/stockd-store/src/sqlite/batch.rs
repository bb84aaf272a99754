//! Reads of many SKUs at once on SQLite: one statement per `BATCH` SKUs
//! (`sku IN (?1, …)`, the tail padded with NULL, which matches nothing)
//! instead of one per SKU. Whole-catalog passes (imports, the start-up
//! recompute, rules previews) read a million SKUs; a statement per SKU and
//! table made them statement-bound. Results come back in the order of the
//! SKUs asked for, as the per-SKU reads gave them.

use crate::rows::parse_id;
use crate::StoreError;
use rusqlite::types::Null;
use rusqlite::{Connection, ToSql};
use std::collections::HashMap;
use std::sync::OnceLock;
use stockd_core::Sku;

/// SKUs per statement.
pub(crate) const BATCH: usize = 200;

/// `?{first}, …, ?{first + BATCH - 1}`.
fn placeholders(first: usize) -> String {
    (first..first + BATCH)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn statement(cell: &'static OnceLock<String>, make: impl FnOnce() -> String) -> &'static str {
    cell.get_or_init(make).as_str()
}

/// Listings of a batch of SKUs.
pub(crate) fn listings_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT channel, sku, external, rank FROM listings WHERE sku IN ({}) ORDER BY sku, channel",
            placeholders(1)
        )
    })
}

/// The listings of a batch of SKUs as an availability computation needs
/// them: channel and rank, without the external ids (JSON it would parse
/// and drop), from the index `listings_by_sku_keys` alone.
pub(crate) fn listing_keys_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT channel, sku, rank FROM listings WHERE sku IN ({}) ORDER BY sku, channel",
            placeholders(1)
        )
    })
}

/// Variants of a batch of SKUs.
pub(crate) fn variants_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT sku, title, product_id, gtin FROM variants WHERE sku IN ({})",
            placeholders(1)
        )
    })
}

/// Stock rows of a batch of SKUs.
pub(crate) fn stock_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT sku, location, on_hand, reserved, pending_return, written_off FROM stock \
             WHERE sku IN ({}) ORDER BY sku, location",
            placeholders(1)
        )
    })
}

/// Inbound lines of a batch of SKUs.
pub(crate) fn inbound_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT po_id, sku, location, qty, eta, confirmed FROM inbound WHERE sku IN ({})",
            placeholders(1)
        )
    })
}

/// The known SKUs of a batch.
pub(crate) fn variants_exist_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT sku FROM variants WHERE sku IN ({})",
            placeholders(1)
        )
    })
}

/// Idempotency records of a batch of keys (the writer's load).
pub(crate) fn idempotency_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT key, payload_hash, result FROM idempotency WHERE key IN ({})",
            placeholders(1)
        )
    })
}

/// Known variants of a batch with their stock rows (the writer's load): a
/// variant without stock rows yet comes back once with a NULL location.
pub(crate) fn variant_stock_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT v.sku, s.location, s.on_hand, s.reserved, s.pending_return, s.written_off \
             FROM variants v LEFT JOIN stock s ON s.sku = v.sku WHERE v.sku IN ({})",
            placeholders(1)
        )
    })
}

/// Stored desired states of every listing of a batch of SKUs: `listing_state`
/// is keyed by (sku, channel), so a SKU's rows are one search and one page,
/// where a statement per channel searched the same page once per channel.
pub(crate) fn stored_desired_in() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    statement(&SQL, || {
        format!(
            "SELECT channel, sku, desired, rules_version, dirty_since_ms IS NOT NULL \
             FROM listing_state WHERE sku IN ({})",
            placeholders(1)
        )
    })
}

/// Runs `sql` once per batch of `skus` (after the `lead` arguments) and
/// hands each row to `row`.
pub(crate) fn each_batch<T>(
    conn: &Connection,
    sql: &str,
    lead: &[&dyn ToSql],
    skus: &[&str],
    mut row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    mut take: impl FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    for batch in skus.chunks(BATCH) {
        let args: Vec<&dyn ToSql> = lead
            .iter()
            .copied()
            .chain(batch.iter().map(|s| s as &dyn ToSql))
            .chain(std::iter::repeat_n(
                &Null as &dyn ToSql,
                BATCH - batch.len(),
            ))
            .collect();
        let mut rows = stmt.query(args.as_slice())?;
        while let Some(r) = rows.next()? {
            take(row(r)?)?;
        }
    }
    Ok(())
}

/// The distinct SKUs of `skus` as text, in first-seen order.
pub(crate) fn distinct(skus: &[Sku]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::with_capacity(skus.len());
    skus.iter()
        .map(Sku::as_str)
        .filter(|s| seen.insert(*s))
        .collect()
}

/// Rows grouped by SKU, handed back in the order of `skus` (a SKU asked
/// for twice gets its rows twice, as per-SKU reads gave them).
pub(crate) fn in_order<T: Clone>(skus: &[Sku], mut by_sku: HashMap<String, Vec<T>>) -> Vec<T> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for sku in skus {
        *counts.entry(sku.as_str()).or_default() += 1;
    }
    let mut out = Vec::new();
    for sku in skus {
        let Some(left) = counts.get_mut(sku.as_str()) else {
            continue;
        };
        *left -= 1;
        if *left == 0 {
            if let Some(rows) = by_sku.remove(sku.as_str()) {
                out.extend(rows);
            }
        } else if let Some(rows) = by_sku.get(sku.as_str()) {
            out.extend(rows.iter().cloned());
        }
    }
    out
}

/// Parses a stored SKU.
pub(crate) fn sku(raw: String) -> Result<Sku, StoreError> {
    parse_id(raw, Sku::parse)
}
