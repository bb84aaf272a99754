//! Returns tracked per RMA. A `return_received` event opens an RMA or adds a
//! line (or units to a line) to it; a `return_verified` event settles units
//! of that RMA only — never another RMA's — and the RMA is closed once every
//! unit it received is settled. The stock row's `pending_return` is the sum
//! of the open units of every RMA at that SKU × location.

use crate::ids::{LocationId, RmaId, Sku};
use serde::{Deserialize, Serialize};

/// Units of one SKU received at one location under an RMA, and what the
/// inspection made of them so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    pub sku: Sku,
    pub location: LocationId,
    pub received_qty: i64,
    /// Verified sellable: back on hand.
    pub sellable_qty: i64,
    /// Verified unsellable: written off.
    pub unsellable_qty: i64,
}

impl ReturnLine {
    /// Received and not yet verified.
    pub fn pending_qty(&self) -> i64 {
        // Stored values lie within ±STOCK_MAX: the difference fits.
        self.received_qty - self.sellable_qty - self.unsellable_qty
    }
}

/// `open` while some received unit is not verified, `closed` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    Open,
    Closed,
}

impl ReturnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnStatus::Open => "open",
            ReturnStatus::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Option<ReturnStatus> {
        match raw {
            "open" => Some(ReturnStatus::Open),
            "closed" => Some(ReturnStatus::Closed),
            _ => None,
        }
    }
}

/// One RMA as `GET /v1/returns/{rma_id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnView {
    pub rma_id: RmaId,
    pub status: ReturnStatus,
    pub received_qty: i64,
    pub sellable_qty: i64,
    pub unsellable_qty: i64,
    pub pending_qty: i64,
    /// In the order the lines were first received.
    pub lines: Vec<ReturnLineView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLineView {
    pub sku: Sku,
    pub location: LocationId,
    pub received_qty: i64,
    pub sellable_qty: i64,
    pub unsellable_qty: i64,
    pub pending_qty: i64,
}

/// The status of an RMA with these lines.
pub fn status(lines: &[ReturnLine]) -> ReturnStatus {
    if lines.iter().any(|l| l.pending_qty() > 0) {
        ReturnStatus::Open
    } else {
        ReturnStatus::Closed
    }
}

/// The view of one RMA. Totals are summed in i128: an RMA's lines are each
/// bounded, their number is not.
pub fn return_view(rma_id: RmaId, lines: &[ReturnLine]) -> ReturnView {
    let total = |f: fn(&ReturnLine) -> i64| {
        let sum: i128 = lines.iter().map(|l| i128::from(f(l))).sum();
        i64::try_from(sum).unwrap_or(i64::MAX)
    };
    ReturnView {
        status: status(lines),
        received_qty: total(|l| l.received_qty),
        sellable_qty: total(|l| l.sellable_qty),
        unsellable_qty: total(|l| l.unsellable_qty),
        pending_qty: total(ReturnLine::pending_qty),
        lines: lines
            .iter()
            .map(|l| ReturnLineView {
                sku: l.sku.clone(),
                location: l.location.clone(),
                received_qty: l.received_qty,
                sellable_qty: l.sellable_qty,
                unsellable_qty: l.unsellable_qty,
                pending_qty: l.pending_qty(),
            })
            .collect(),
        rma_id,
    }
}

/// How a verification of `sellable` + `unsellable` units is spread over the
/// `matching` lines (indexes into `lines`, in line order): each line takes
/// sellable units first, then unsellable ones, up to what it has pending.
/// Returns (line index, sellable, unsellable) per line touched; the caller
/// has checked that the matching lines have enough pending.
pub fn spread(
    lines: &[ReturnLine],
    matching: &[usize],
    sellable: i64,
    unsellable: i64,
) -> Vec<(usize, i64, i64)> {
    let (mut sellable_left, mut unsellable_left) = (sellable, unsellable);
    let mut out = Vec::new();
    for &i in matching {
        let pending = lines[i].pending_qty().max(0);
        let s = sellable_left.min(pending);
        let u = unsellable_left.min(pending - s);
        sellable_left -= s;
        unsellable_left -= u;
        if s > 0 || u > 0 {
            out.push((i, s, u));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, received: i64, sellable: i64) -> ReturnLine {
        ReturnLine {
            sku: Sku::parse(sku).unwrap(),
            location: LocationId::parse("W").unwrap(),
            received_qty: received,
            sellable_qty: sellable,
            unsellable_qty: 0,
        }
    }

    #[test]
    fn spread_fills_lines_in_order_sellable_first() {
        let lines = [line("A", 3, 1), line("B", 4, 0)];
        assert_eq!(spread(&lines, &[0, 1], 3, 2), vec![(0, 2, 0), (1, 1, 2)]);
        assert_eq!(status(&lines), ReturnStatus::Open);
        assert_eq!(status(&[line("A", 2, 2)]), ReturnStatus::Closed);
        let view = return_view(RmaId::parse("R").unwrap(), &lines);
        assert_eq!((view.received_qty, view.pending_qty), (7, 6));
    }
}
