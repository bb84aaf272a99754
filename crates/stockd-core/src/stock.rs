//! Quantities per variant × location, and the stock view computed from them.

use crate::catalog::Location;
use crate::ids::{LocationId, PoId, Sku};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The counters kept per variant × location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantities {
    /// Physically present and sellable (verified returns included).
    pub on_hand: i64,
    /// Held for open order lines.
    pub reserved: i64,
    /// Returned, not yet inspected: never sellable.
    pub pending_return: i64,
    /// Returned and found unsellable (kept for the audit, never sellable).
    pub written_off: i64,
}

/// Key of a stock row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StockKey {
    pub sku: Sku,
    pub location: LocationId,
}

/// One purchase-order line: not sellable until received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLine {
    pub po_id: PoId,
    pub sku: Sku,
    pub location: LocationId,
    pub qty: i64,
    pub eta: Option<NaiveDate>,
    pub confirmed: bool,
}

/// Key of an inbound line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InboundKey {
    pub po_id: PoId,
    pub sku: Sku,
    pub location: LocationId,
}

impl InboundLine {
    pub fn key(&self) -> InboundKey {
        InboundKey {
            po_id: self.po_id.clone(),
            sku: self.sku.clone(),
            location: self.location.clone(),
        }
    }
}

/// What `GET /v1/stock/{sku}` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    pub sku: Sku,
    /// Totals over sellable locations.
    pub on_hand: i64,
    pub reserved: i64,
    /// on_hand − reserved over sellable locations, floored at 0.
    pub available: i64,
    pub pending_return: i64,
    /// The shortfall when reservations exceed on_hand (0 otherwise).
    pub oversold: i64,
    /// Open purchase-order lines: those with an ETA first (by ETA, then PO),
    /// those without one last (by PO).
    pub inbound: Vec<InboundView>,
    pub locations: Vec<LocationStock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundView {
    pub po_id: PoId,
    pub location: LocationId,
    pub qty: i64,
    pub eta: Option<NaiveDate>,
    pub confirmed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    pub location: LocationId,
    pub sellable: bool,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub pending_return: i64,
}

/// Builds the stock view of one variant from its rows. Rows of locations that
/// are not sellable are listed but do not count towards the totals.
pub fn stock_view(sku: Sku, rows: &[(Location, Quantities)], inbound: &[InboundLine]) -> StockView {
    // Summed in i128 and clamped: counters lie within ±STOCK_MAX, so this
    // never clamps in practice, and a total can never wrap.
    let mut on_hand: i128 = 0;
    let mut reserved: i128 = 0;
    let mut pending_return: i128 = 0;
    let mut locations = Vec::with_capacity(rows.len());
    let mut sorted: Vec<&(Location, Quantities)> = rows.iter().collect();
    sorted.sort_by(|a, b| (a.0.priority, &a.0.id).cmp(&(b.0.priority, &b.0.id)));
    for (location, q) in sorted {
        if location.sellable {
            on_hand += i128::from(q.on_hand);
            reserved += i128::from(q.reserved);
        }
        pending_return += i128::from(q.pending_return);
        locations.push(LocationStock {
            location: location.id.clone(),
            sellable: location.sellable,
            on_hand: q.on_hand,
            reserved: q.reserved,
            available: q.on_hand.saturating_sub(q.reserved).max(0),
            pending_return: q.pending_return,
        });
    }
    let mut inbound: Vec<InboundView> = inbound
        .iter()
        .filter(|line| line.qty > 0)
        .map(|line| InboundView {
            po_id: line.po_id.clone(),
            location: line.location.clone(),
            qty: line.qty,
            eta: line.eta,
            confirmed: line.confirmed,
        })
        .collect();
    // Lines with an ETA first, soonest first; lines without one last.
    inbound.sort_by(|a, b| {
        (a.eta.is_none(), a.eta, &a.po_id).cmp(&(b.eta.is_none(), b.eta, &b.po_id))
    });
    let clamp =
        |total: i128| i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX });
    StockView {
        sku,
        on_hand: clamp(on_hand),
        reserved: clamp(reserved),
        available: clamp((on_hand - reserved).max(0)),
        pending_return: clamp(pending_return),
        oversold: clamp((reserved - on_hand).max(0)),
        inbound,
        locations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(id: &str, sellable: bool, priority: i32) -> Location {
        Location {
            id: LocationId::parse(id).unwrap(),
            name: id.into(),
            sellable,
            priority,
        }
    }

    #[test]
    fn totals_count_only_sellable_locations() {
        let q = |on_hand, reserved| Quantities {
            on_hand,
            reserved,
            ..Quantities::default()
        };
        let rows = [
            (loc("B", true, 2), q(3, 5)),
            (loc("A", true, 1), q(10, 1)),
            (loc("Q", false, 0), q(7, 0)),
        ];
        let view = stock_view(Sku::parse("S").unwrap(), &rows, &[]);
        assert_eq!(
            (view.on_hand, view.reserved, view.available, view.oversold),
            (13, 6, 7, 0)
        );
        assert_eq!(view.locations[0].location.as_str(), "Q");
        assert_eq!(view.locations[2].available, 0);

        let rows = [(loc("A", true, 1), q(2, 5))];
        let view = stock_view(Sku::parse("S").unwrap(), &rows, &[]);
        assert_eq!((view.available, view.oversold), (0, 3));
    }
}
