//! Orders for kits: pre-built kit stock is reserved first, the rest reserves
//! the components; ship and cancel count in kits and settle both parts.

use stockd_core::event::{EventInput, LineInput};
use stockd_core::ledger::{apply, Awaiting, Book, EventError, Note, Refusal};
use stockd_core::{Event, Location, LocationId, Quantities, Sku, StockKey};

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn loc(s: &str) -> LocationId {
    LocationId::parse(s).unwrap()
}

fn key(s: &str, l: &str) -> StockKey {
    StockKey {
        sku: sku(s),
        location: loc(l),
    }
}

/// Kit K = 2 × A + 1 × B. W1 (priority 1) and W2 (priority 2) are sellable.
fn book(stock: &[(&str, &str, i64)]) -> Book {
    let mut book = Book::new(["W1", "W2"].iter().enumerate().map(|(i, id)| Location {
        id: loc(id),
        name: id.to_string(),
        sellable: true,
        priority: i as i32 + 1,
    }));
    for s in ["K", "A", "B"] {
        book.load_variant(sku(s));
    }
    book.load_kit(sku("K"), vec![(sku("A"), 2), (sku("B"), 1)]);
    for &(s, l, on_hand) in stock {
        book.load_stock(
            key(s, l),
            Quantities {
                on_hand,
                ..Quantities::default()
            },
        );
    }
    book
}

fn event(kind: &str, lines: &[(&str, Option<&str>, Option<i64>)]) -> Event {
    Event::validate(&EventInput {
        key: Some("k".into()),
        kind: Some(kind.into()),
        order_id: Some("1".into()),
        lines: (!lines.is_empty()).then(|| {
            lines
                .iter()
                .map(|&(line_id, s, qty)| LineInput {
                    line_id: Some(line_id.into()),
                    sku: s.map(Into::into),
                    qty,
                    location: None,
                })
                .collect()
        }),
        ..EventInput::default()
    })
    .unwrap()
}

/// (on_hand, reserved) at each of the given rows.
fn rows(book: &Book, at: &[(&str, &str)]) -> Vec<(i64, i64)> {
    at.iter()
        .map(|&(s, l)| {
            let q = book.quantities(&key(s, l));
            (q.on_hand, q.reserved)
        })
        .collect()
}

const ROWS: [(&str, &str); 5] = [
    ("K", "W1"),
    ("A", "W1"),
    ("A", "W2"),
    ("B", "W1"),
    ("B", "W2"),
];

#[test]
fn a_kit_order_reserves_prebuilt_kits_then_components() {
    let mut b = book(&[
        ("K", "W1", 1),
        ("A", "W1", 3),
        ("A", "W2", 2),
        ("B", "W1", 1),
    ]);
    let applied = apply(&mut b, &event("order", &[("1", Some("K"), Some(3))]).kind).unwrap();
    // 1 pre-built kit; 2 kits assembled: 4 A (3 at W1, 1 at W2), 2 B (1 at W1, 1 short).
    assert_eq!(rows(&b, &ROWS), [(1, 1), (3, 3), (2, 1), (1, 2), (0, 0)]);
    assert_eq!(
        applied.notes,
        [Note::Oversell {
            line_id: stockd_core::LineId::parse("1").unwrap(),
            sku: sku("B"),
            location: loc("W1"),
            shortfall_qty: 1,
        }]
    );
    let order = stockd_core::OrderRef {
        channel: None,
        order_id: stockd_core::OrderId::parse("1").unwrap(),
    };
    let lines = b.order_lines(&order).unwrap();
    assert!(lines.iter().all(|l| l.line_sku() == &sku("K")));
    assert_eq!(lines.iter().filter(|l| l.kit.is_some()).count(), 3);
}

#[test]
fn ship_takes_prebuilt_kits_first_and_counts_in_kits() {
    let mut b = book(&[
        ("K", "W1", 1),
        ("A", "W1", 3),
        ("A", "W2", 2),
        ("B", "W1", 2),
    ]);
    apply(&mut b, &event("order", &[("1", Some("K"), Some(3))]).kind).unwrap();
    apply(&mut b, &event("ship", &[("1", None, Some(2))]).kind).unwrap();
    // The pre-built kit and one assembled kit (2 A from W1, 1 B) left.
    assert_eq!(rows(&b, &ROWS), [(0, 0), (1, 1), (2, 1), (1, 1), (0, 0)]);
    let refused = apply(&mut b, &event("ship", &[("1", None, Some(2))]).kind);
    assert_eq!(
        refused,
        Err(Refusal::Reject(EventError::ReservationExceeded {
            line_id: stockd_core::LineId::parse("1").unwrap(),
            open: 1,
            requested: 2,
        }))
    );
    apply(&mut b, &event("ship", &[]).kind).unwrap();
    assert_eq!(rows(&b, &ROWS), [(0, 0), (0, 0), (1, 0), (0, 0), (0, 0)]);
}

#[test]
fn cancel_releases_components_before_prebuilt_kits() {
    let mut b = book(&[("K", "W1", 1), ("A", "W1", 4), ("B", "W1", 2)]);
    apply(&mut b, &event("order", &[("1", Some("K"), Some(3))]).kind).unwrap();
    apply(&mut b, &event("cancel", &[("1", Some("K"), Some(1))]).kind).unwrap();
    assert_eq!(rows(&b, &ROWS), [(1, 1), (4, 2), (0, 0), (2, 1), (0, 0)]);
    apply(&mut b, &event("cancel", &[]).kind).unwrap();
    assert_eq!(rows(&b, &ROWS), [(1, 0), (4, 0), (0, 0), (2, 0), (0, 0)]);
}

#[test]
fn a_component_sku_does_not_name_a_kit_line() {
    let mut b = book(&[("A", "W1", 4), ("B", "W1", 2)]);
    apply(&mut b, &event("order", &[("1", Some("K"), Some(1))]).kind).unwrap();
    let refused = apply(&mut b, &event("cancel", &[("1", Some("A"), None)]).kind);
    assert!(matches!(
        refused,
        Err(Refusal::Reject(EventError::LineSkuMismatch { .. }))
    ));
}

#[test]
fn an_unknown_component_quarantines_the_order() {
    let mut b = Book::new([Location {
        id: loc("W1"),
        name: "W1".into(),
        sellable: true,
        priority: 1,
    }]);
    b.load_variant(sku("K"));
    b.load_variant(sku("A"));
    b.load_kit(sku("K"), vec![(sku("A"), 1), (sku("B"), 1)]);
    let refused = apply(&mut b, &event("order", &[("1", Some("K"), Some(1))]).kind);
    assert_eq!(
        refused,
        Err(Refusal::Quarantine(Awaiting::Variant(sku("B"))))
    );
}
