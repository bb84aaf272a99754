//! The ledger's own invariants, checked after every applied event in debug
//! builds and tests (release builds skip them: they cost a pass over the
//! event's order). A failure is a bug in the rules, never bad input: input is
//! refused before it changes anything.
//!
//! - each reservation row ends shipped or cancelled, never more than ordered;
//! - `reserved` moves exactly as the open reservations do: at every stock row,
//!   the event's change of `reserved` equals its change of the open quantity
//!   of the reservations there (the book holds only the orders a group names,
//!   so the sum itself is checked by the model test over whole histories);
//! - the components of a kit line are reserved, shipped and cancelled in whole
//!   kits, the same number of kits for every component;
//! - every counter the event touched stays within ±`STOCK_MAX`.

use super::{Applied, Book, ReservationLine};
use crate::event::{EventKind, STOCK_MAX};
use crate::ids::{LineId, OrderRef, Sku};
use crate::stock::StockKey;
use std::collections::BTreeMap;

/// What the checks compare against: the event's order as it was before.
pub(super) struct Before {
    order: Option<(OrderRef, Vec<ReservationLine>)>,
}

impl Before {
    pub(super) fn take(book: &Book, event: &EventKind) -> Before {
        Before {
            order: order_of(event).map(|order| {
                let rows = book.order_lines(order).map(<[_]>::to_vec);
                (order.clone(), rows.unwrap_or_default())
            }),
        }
    }

    /// Panics (debug builds only) when the applied event broke an invariant.
    pub(super) fn check(self, book: &Book, applied: &Applied) {
        let after: &[ReservationLine] = match &self.order {
            Some((order, _)) => book.order_lines(order).unwrap_or(&[]),
            None => &[],
        };
        let before: &[ReservationLine] = self.order.as_ref().map_or(&[], |(_, rows)| rows);
        for row in after {
            assert!(
                row.ordered_qty >= 0
                    && row.shipped_qty >= 0
                    && row.cancelled_qty >= 0
                    && row.shipped_qty + row.cancelled_qty <= row.ordered_qty,
                "ledger invariant: reservation settled beyond what was ordered: {row:?}"
            );
        }
        let mut open_change: BTreeMap<StockKey, i64> = BTreeMap::new();
        for (rows, sign) in [(after, 1), (before, -1)] {
            for row in rows {
                let key = StockKey {
                    sku: row.sku.clone(),
                    location: row.location.clone(),
                };
                *open_change.entry(key).or_default() += sign * row.open_qty();
            }
        }
        let mut reserved_change: BTreeMap<StockKey, i64> = BTreeMap::new();
        for delta in &applied.changes {
            let key = StockKey {
                sku: delta.sku.clone(),
                location: delta.location.clone(),
            };
            let q = book.quantities(&key);
            for (name, value) in [
                ("on_hand", q.on_hand),
                ("reserved", q.reserved),
                ("pending_return", q.pending_return),
                ("written_off", q.written_off),
            ] {
                assert!(
                    value.unsigned_abs() <= STOCK_MAX.unsigned_abs(),
                    "ledger invariant: {name} of {key:?} is {value}, beyond ±STOCK_MAX"
                );
            }
            *reserved_change.entry(key).or_default() += delta.reserved;
        }
        open_change.retain(|_, change| *change != 0);
        reserved_change.retain(|_, change| *change != 0);
        assert_eq!(
            reserved_change, open_change,
            "ledger invariant: reserved moved otherwise than the open reservations"
        );
        check_kits(after);
    }
}

/// The order an event settles or places (only these move `reserved`).
fn order_of(event: &EventKind) -> Option<&OrderRef> {
    match event {
        EventKind::Order { order, .. }
        | EventKind::Cancel { order, .. }
        | EventKind::Ship { order, .. } => Some(order),
        _ => None,
    }
}

/// Per kit line, every component counts the same whole number of kits
/// ordered, shipped and cancelled.
fn check_kits(rows: &[ReservationLine]) {
    // (line, component) → (units per kit, Σ ordered, Σ shipped, Σ cancelled)
    let mut parts: BTreeMap<(&LineId, &Sku), (i64, [i64; 3])> = BTreeMap::new();
    for row in rows {
        if let Some(part) = &row.kit {
            let entry = parts
                .entry((&row.line_id, &row.sku))
                .or_insert((part.per_kit_qty.max(1), [0; 3]));
            entry.1[0] += row.ordered_qty;
            entry.1[1] += row.shipped_qty;
            entry.1[2] += row.cancelled_qty;
        }
    }
    let mut kits_per_line: BTreeMap<&LineId, [i64; 3]> = BTreeMap::new();
    for ((line, component), (per_kit, sums)) in &parts {
        assert!(
            sums.iter().all(|s| s % per_kit == 0),
            "ledger invariant: component {component} of kit line {line} settled in part kits: \
             {sums:?} units at {per_kit} per kit"
        );
        let kits = sums.map(|s| s / per_kit);
        let first = *kits_per_line.entry(line).or_insert(kits);
        assert_eq!(
            first, kits,
            "ledger invariant: the components of kit line {line} were not settled together \
             (kits ordered, shipped, cancelled)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LocationId, OrderId};
    use crate::ledger::KitPart;

    fn component(sku: &str, per_kit: i64, ordered: i64, shipped: i64) -> ReservationLine {
        ReservationLine {
            order: OrderRef {
                channel: None,
                order_id: OrderId::parse("O1").unwrap(),
            },
            line_id: LineId::parse("1").unwrap(),
            alloc_index: 0,
            sku: Sku::parse(sku).unwrap(),
            location: LocationId::parse("WH1").unwrap(),
            ordered_qty: ordered,
            shipped_qty: shipped,
            cancelled_qty: 0,
            kit: Some(KitPart {
                kit_sku: Sku::parse("KIT").unwrap(),
                per_kit_qty: per_kit,
            }),
        }
    }

    #[test]
    fn components_settled_in_whole_kits_together_pass() {
        check_kits(&[component("A", 2, 6, 4), component("B", 1, 3, 2)]);
    }

    #[test]
    #[should_panic(expected = "not settled together")]
    fn a_component_shipped_without_the_other_is_caught() {
        check_kits(&[component("A", 2, 6, 4), component("B", 1, 3, 0)]);
    }

    #[test]
    #[should_panic(expected = "part kits")]
    fn part_of_a_kit_shipped_is_caught() {
        check_kits(&[component("A", 2, 6, 3)]);
    }
}
