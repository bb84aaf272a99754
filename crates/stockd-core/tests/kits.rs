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
    let lines: Vec<_> = lines
        .iter()
        .map(|&(id, s, qty)| (id, s, qty, None))
        .collect();
    event_at(kind, &lines)
}

/// (line id, sku, qty, location) of one line of an event.
type LineAt<'a> = (&'a str, Option<&'a str>, Option<i64>, Option<&'a str>);

/// Like `event`, each line optionally naming a location.
fn event_at(kind: &str, lines: &[LineAt]) -> Event {
    Event::validate(&EventInput {
        key: Some("k".into()),
        kind: Some(kind.into()),
        order_id: Some("1".into()),
        lines: (!lines.is_empty()).then(|| {
            lines
                .iter()
                .map(|&(line_id, s, qty, location)| LineInput {
                    line_id: Some(line_id.into()),
                    sku: s.map(Into::into),
                    qty,
                    location: location.map(Into::into),
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

fn order_1() -> stockd_core::OrderRef {
    stockd_core::OrderRef {
        channel: None,
        order_id: stockd_core::OrderId::parse("1").unwrap(),
    }
}

/// (sku, location, ordered, shipped, cancelled) of every reservation row.
fn reservations(book: &Book) -> Vec<(String, String, i64, i64, i64)> {
    book.order_lines(&order_1())
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.sku.to_string(),
                r.location.to_string(),
                r.ordered_qty,
                r.shipped_qty,
                r.cancelled_qty,
            )
        })
        .collect()
}

fn exceeded(open: i64, requested: i64) -> Result<stockd_core::ledger::Applied, Refusal> {
    Err(Refusal::Reject(EventError::ReservationExceeded {
        line_id: stockd_core::LineId::parse("1").unwrap(),
        open,
        requested,
    }))
}

/// 2 kits: A at W1 (2) and W2 (2), every B at W2 — W1 holds no whole kit.
fn split_kit_order() -> Book {
    let mut b = book(&[("A", "W1", 2), ("A", "W2", 2), ("B", "W2", 2)]);
    apply(&mut b, &event("order", &[("1", Some("K"), Some(2))]).kind).unwrap();
    assert_eq!(
        reservations(&b),
        [
            ("A".into(), "W1".into(), 2, 0, 0),
            ("A".into(), "W2".into(), 2, 0, 0),
            ("B".into(), "W2".into(), 2, 0, 0),
        ]
    );
    b
}

#[test]
fn a_ship_at_one_location_settles_only_whole_kits_held_there() {
    let mut b = split_kit_order();
    // W1 holds 2 A but no B: not a single kit, so nothing ships from it alone.
    let ship_w1 = event_at("ship", &[("1", None, Some(1), Some("W1"))]);
    let before = (reservations(&b), rows(&b, &ROWS));
    assert_eq!(apply(&mut b, &ship_w1.kind), exceeded(0, 1));
    assert_eq!((reservations(&b), rows(&b, &ROWS)), before);
    // W2 holds one whole kit (2 A, and 2 B of which one kit takes 1).
    let ship_w2 = event_at("ship", &[("1", None, Some(2), Some("W2"))]);
    assert_eq!(apply(&mut b, &ship_w2.kind), exceeded(1, 2));
    apply(
        &mut b,
        &event_at("ship", &[("1", Some("K"), Some(1), Some("W2"))]).kind,
    )
    .unwrap();
    assert_eq!(
        reservations(&b),
        [
            ("A".into(), "W1".into(), 2, 0, 0),
            ("A".into(), "W2".into(), 2, 2, 0),
            ("B".into(), "W2".into(), 2, 1, 0),
        ]
    );
    // The last kit is split over W1 and W2: neither settles it alone, the
    // line without a location does.
    assert_eq!(
        apply(
            &mut b,
            &event_at("ship", &[("1", None, None, Some("W2"))]).kind
        ),
        exceeded(0, 0)
    );
    apply(&mut b, &event("ship", &[("1", None, None)]).kind).unwrap();
    assert_eq!(
        reservations(&b),
        [
            ("A".into(), "W1".into(), 2, 2, 0),
            ("A".into(), "W2".into(), 2, 2, 0),
            ("B".into(), "W2".into(), 2, 2, 0),
        ]
    );
    assert_eq!(rows(&b, &ROWS), [(0, 0), (0, 0), (0, 0), (0, 0), (0, 0)]);
    assert_eq!(b.quantities(&key("B", "W2")), Quantities::default());
}

#[test]
fn a_cancel_at_one_location_releases_only_whole_kits_held_there() {
    let mut b = split_kit_order();
    let cancel_w1 = event_at("cancel", &[("1", None, None, Some("W1"))]);
    let before = (reservations(&b), rows(&b, &ROWS));
    assert_eq!(apply(&mut b, &cancel_w1.kind), exceeded(0, 0));
    assert_eq!((reservations(&b), rows(&b, &ROWS)), before);
    apply(
        &mut b,
        &event_at("cancel", &[("1", None, None, Some("W2"))]).kind,
    )
    .unwrap();
    // One whole kit released at W2; the split kit stays reserved.
    assert_eq!(
        reservations(&b),
        [
            ("A".into(), "W1".into(), 2, 0, 0),
            ("A".into(), "W2".into(), 2, 0, 2),
            ("B".into(), "W2".into(), 2, 0, 1),
        ]
    );
    assert_eq!(
        rows(&b, &[("A", "W1"), ("A", "W2"), ("B", "W2")]),
        [(2, 2), (2, 0), (2, 1)]
    );
    apply(&mut b, &event("cancel", &[]).kind).unwrap();
    assert_eq!(
        rows(&b, &[("A", "W1"), ("A", "W2"), ("B", "W2")]),
        [(2, 0), (2, 0), (2, 0)]
    );
}

/// Part kits at a location: 3 A (1½ kits) and 1 B at W1 hold one whole kit.
#[test]
fn part_kits_at_a_location_count_down_to_whole_kits() {
    // Order 3 K: 6 A (3 at W1, 3 at W2), 3 B (1 at W1, 2 at W2).
    let mut b = book(&[
        ("A", "W1", 3),
        ("A", "W2", 3),
        ("B", "W1", 1),
        ("B", "W2", 2),
    ]);
    apply(&mut b, &event("order", &[("1", Some("K"), Some(3))]).kind).unwrap();
    assert_eq!(
        apply(
            &mut b,
            &event_at("ship", &[("1", None, Some(2), Some("W1"))]).kind
        ),
        exceeded(1, 2)
    );
    apply(
        &mut b,
        &event_at("ship", &[("1", None, None, Some("W1"))]).kind,
    )
    .unwrap();
    // W2: 3 A and 2 B — one whole kit (the B for a second lacks its 4th A).
    apply(
        &mut b,
        &event_at("cancel", &[("1", None, None, Some("W2"))]).kind,
    )
    .unwrap();
    assert_eq!(
        reservations(&b),
        [
            ("A".into(), "W1".into(), 3, 2, 0),
            ("A".into(), "W2".into(), 3, 0, 2),
            ("B".into(), "W1".into(), 1, 1, 0),
            ("B".into(), "W2".into(), 2, 0, 1),
        ]
    );
    // The last kit: 1 A at W1, 1 A and 1 B at W2.
    for at in ["W1", "W2"] {
        assert_eq!(
            apply(
                &mut b,
                &event_at("ship", &[("1", None, Some(1), Some(at))]).kind
            ),
            exceeded(0, 1)
        );
    }
    apply(&mut b, &event("ship", &[("1", Some("K"), Some(1))]).kind).unwrap();
    assert_eq!(rows(&b, &ROWS[1..]), [(0, 0), (2, 0), (0, 0), (1, 0)]);
}
