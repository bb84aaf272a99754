//! Property tests with extreme quantities: every event type, with values at
//! and beyond the bounds (0, ±1, ±QTY_MAX, ±STOCK_MAX, i64::MIN/MAX) over
//! books whose counters sit at the bounds. Nothing may wrap or panic (tests
//! build with overflow checks), every stored counter stays within
//! ±STOCK_MAX, and an event that is refused leaves the book as it was.
//! Sums of many bound values end in a `quantity_overflow` refusal, not a
//! saturated or wrapped counter.

use stockd_core::event::{LineInput, QTY_MAX, STOCK_MAX};
use stockd_core::ledger::{apply, Book, EventError, Refusal};
use stockd_core::stock::{InboundKey, InboundLine};
use stockd_core::{
    Event, EventInput, Location, LocationId, OrderRef, PoId, Quantities, RmaId, Sku, StockKey,
};

const SKUS: [&str; 3] = ["A", "B", "K"];
const LOCS: [&str; 2] = ["W1", "W2"];
const SEEDS: u64 = 400;
const EVENTS: usize = 40;

/// Values at, around and far beyond every bound.
const EXTREMES: [i64; 17] = [
    0,
    1,
    -1,
    2,
    QTY_MAX - 1,
    QTY_MAX,
    QTY_MAX + 1,
    -QTY_MAX,
    -QTY_MAX - 1,
    STOCK_MAX - 1,
    STOCK_MAX,
    -STOCK_MAX,
    i64::MAX,
    i64::MAX - 1,
    i64::MIN,
    i64::MIN + 1,
    i64::MAX / 2,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// An extreme value most of the time, a small one otherwise.
    fn qty(&mut self) -> i64 {
        if self.below(4) == 0 {
            self.below(5) as i64
        } else {
            EXTREMES[self.below(EXTREMES.len())]
        }
    }
    /// A counter a stored row may hold: within ±STOCK_MAX.
    fn counter(&mut self, min: i64) -> i64 {
        let v = match self.below(5) {
            0 => STOCK_MAX,
            1 => STOCK_MAX - QTY_MAX / 2,
            2 => -STOCK_MAX,
            3 => QTY_MAX,
            _ => self.below(10) as i64,
        };
        v.max(min)
    }
}

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
fn order() -> OrderRef {
    OrderRef {
        channel: None,
        order_id: stockd_core::OrderId::parse("O1").unwrap(),
    }
}

/// A book with counters at the bounds, an open order, an inbound line, an
/// open RMA and a kit K = 4,000,000,000 × A (the largest per-kit quantity).
fn book(rng: &mut Rng) -> Book {
    let mut book = Book::new(LOCS.iter().enumerate().map(|(i, id)| Location {
        id: loc(id),
        name: id.to_string(),
        sellable: true,
        priority: i as i32,
    }));
    for s in SKUS {
        book.load_variant(sku(s));
        for l in LOCS {
            let reserved = rng.counter(0);
            book.load_stock(
                key(s, l),
                Quantities {
                    on_hand: rng.counter(-STOCK_MAX),
                    reserved,
                    pending_return: rng.counter(0),
                    written_off: rng.counter(0),
                },
            );
        }
    }
    book.load_kit(sku("K"), vec![(sku("A"), i64::from(u32::MAX))]);
    let reserved = book.quantities(&key("A", "W1")).reserved;
    book.load_reservation(stockd_core::ReservationLine {
        order: order(),
        line_id: stockd_core::LineId::parse("1").unwrap(),
        alloc_index: 0,
        sku: sku("A"),
        location: loc("W1"),
        ordered_qty: reserved,
        shipped_qty: 0,
        cancelled_qty: 0,
        kit: None,
    });
    book.load_inbound(InboundLine {
        po_id: PoId::parse("P1").unwrap(),
        sku: sku("A"),
        location: loc("W1"),
        qty: QTY_MAX,
        eta: None,
        confirmed: false,
    });
    book.load_returns(
        RmaId::parse("R1").unwrap(),
        vec![stockd_core::returns::ReturnLine {
            sku: sku("A"),
            location: loc("W1"),
            received_qty: STOCK_MAX,
            sellable_qty: 0,
            unsellable_qty: 0,
        }],
    );
    book
}

/// A random event of a random type, with extreme quantities.
fn input(rng: &mut Rng, n: usize) -> EventInput {
    let types = stockd_core::event::EVENT_TYPES;
    let kind = types[rng.below(types.len())];
    let s = SKUS[rng.below(SKUS.len())];
    let l = LOCS[rng.below(LOCS.len())];
    let mut e = EventInput {
        key: Some(format!("k{n}")),
        kind: Some(kind.into()),
        ..EventInput::default()
    };
    let line = |rng: &mut Rng, id: &str, with_sku: bool| LineInput {
        line_id: Some(id.into()),
        sku: with_sku.then(|| SKUS[rng.below(SKUS.len())].into()),
        qty: Some(rng.qty()),
        location: None,
    };
    match kind {
        "receipt" | "inbound_received" | "inbound" | "return_received" => {
            e.sku = Some(s.into());
            e.location = Some(l.into());
            e.qty = Some(rng.qty());
            if kind.starts_with("inbound") {
                e.po_id = Some("P1".into());
            }
            if kind == "return_received" {
                e.rma_id = Some(format!("R{}", rng.below(3)));
            }
        }
        "adjust" => {
            e.sku = Some(s.into());
            e.location = Some(l.into());
            e.delta = Some(if rng.below(2) == 0 {
                rng.qty()
            } else {
                rng.qty().wrapping_neg()
            });
            e.reason = Some("test".into());
        }
        "count" => {
            e.sku = Some(s.into());
            e.location = Some(l.into());
            e.on_hand = Some(rng.qty());
        }
        "order" => {
            e.order_id = Some(format!("O{}", 2 + rng.below(2)));
            e.lines = Some(
                (0..1 + rng.below(3))
                    .map(|i| line(rng, &i.to_string(), true))
                    .collect(),
            );
        }
        "cancel" | "ship" => {
            e.order_id = Some("O1".into());
            if rng.below(3) > 0 {
                e.lines = Some(vec![line(rng, "1", false)]);
            }
        }
        "return_verified" => {
            e.rma_id = Some(format!("R{}", rng.below(3)));
            e.sellable_qty = Some(rng.qty());
            e.unsellable_qty = Some(rng.qty());
        }
        _ => unreachable!("every event type is generated"),
    }
    e
}

/// Everything the events can change, to compare before and after.
fn snapshot(book: &Book) -> String {
    let mut out = String::new();
    for s in SKUS {
        for l in LOCS {
            out.push_str(&format!("{s}@{l}={:?};", book.quantities(&key(s, l))));
        }
    }
    for o in ["O1", "O2", "O3"] {
        let order = OrderRef {
            channel: None,
            order_id: stockd_core::OrderId::parse(o).unwrap(),
        };
        out.push_str(&format!("{o}={:?};", book.order_lines(&order)));
    }
    let inbound = InboundKey {
        po_id: PoId::parse("P1").unwrap(),
        sku: sku("A"),
        location: loc("W1"),
    };
    out.push_str(&format!("P1={:?};", book.inbound_line(&inbound)));
    for r in ["R0", "R1", "R2"] {
        out.push_str(&format!(
            "{r}={:?};",
            book.return_lines(&RmaId::parse(r).unwrap())
        ));
    }
    out
}

fn assert_bounded(book: &Book, context: &str) {
    let within = |v: i64| v.unsigned_abs() <= STOCK_MAX.unsigned_abs();
    for s in SKUS {
        for l in LOCS {
            let q = book.quantities(&key(s, l));
            assert!(
                within(q.on_hand) && within(q.reserved),
                "{context}: {s}@{l} {q:?}"
            );
            assert!(
                within(q.pending_return) && within(q.written_off),
                "{context}: {s}@{l} {q:?}"
            );
        }
    }
}

#[test]
fn extreme_values_never_wrap_and_refusals_change_nothing() {
    let mut applied = 0;
    let mut overflow_refusals = 0;
    for seed in 1..=SEEDS {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut book = book(&mut rng);
        for n in 0..EVENTS {
            let input = input(&mut rng, n);
            let context = format!("seed {seed} event {n}: {input:?}");
            let Ok(event) = Event::validate(&input) else {
                // Validation refuses out-of-bound values; they never reach the book.
                continue;
            };
            let before = snapshot(&book);
            match apply(&mut book, &event.kind) {
                Ok(_) => applied += 1,
                Err(refusal) => {
                    if let Refusal::Reject(EventError::QuantityOverflow { .. }) = refusal {
                        overflow_refusals += 1;
                    }
                    assert_eq!(
                        snapshot(&book),
                        before,
                        "{context}: refusal changed the book"
                    );
                }
            }
            assert_bounded(&book, &context);
        }
    }
    // The generator reaches both outcomes (a test that cannot fail is no test).
    assert!(applied > 1_000, "only {applied} events applied");
    assert!(
        overflow_refusals > 50,
        "only {overflow_refusals} overflow refusals"
    );
}

#[test]
fn out_of_bound_values_fail_validation_on_every_field() {
    let base = |kind: &str| EventInput {
        key: Some("k".into()),
        kind: Some(kind.into()),
        sku: Some("A".into()),
        location: Some("W1".into()),
        ..EventInput::default()
    };
    for v in [QTY_MAX + 1, i64::MAX, i64::MIN, -QTY_MAX - 1, i64::MIN + 1] {
        let mut adjust = base("adjust");
        adjust.delta = Some(v);
        adjust.reason = Some("r".into());
        let errors = Event::validate(&adjust).unwrap_err();
        assert_eq!(errors[0].field, "delta", "{v}");
        for kind in ["receipt", "return_received", "inbound", "inbound_received"] {
            let mut e = base(kind);
            e.qty = Some(v);
            e.po_id = Some("P".into());
            e.rma_id = Some("R".into());
            if kind.starts_with("return") {
                e.po_id = None;
            } else {
                e.rma_id = None;
            }
            let errors = Event::validate(&e).unwrap_err();
            assert!(errors.iter().any(|f| f.field == "qty"), "{kind} {v}");
        }
        let mut count = base("count");
        count.on_hand = Some(v);
        assert!(Event::validate(&count).is_err(), "count {v}");
    }
    // The bound itself is accepted, in both directions.
    let mut adjust = base("adjust");
    adjust.reason = Some("r".into());
    for v in [QTY_MAX, -QTY_MAX] {
        adjust.delta = Some(v);
        assert!(Event::validate(&adjust).is_ok(), "{v}");
    }
}

#[test]
fn sums_of_many_bound_values_end_in_a_refusal() {
    let mut book = Book::new([Location {
        id: loc("W1"),
        name: "W1".into(),
        sellable: true,
        priority: 0,
    }]);
    book.load_variant(sku("A"));
    let receipt = |n: usize| {
        Event::validate(&EventInput {
            key: Some(format!("k{n}")),
            kind: Some("receipt".into()),
            sku: Some("A".into()),
            location: Some("W1".into()),
            qty: Some(QTY_MAX),
            ..EventInput::default()
        })
        .unwrap()
    };
    let steps = (STOCK_MAX / QTY_MAX) as usize;
    for n in 0..steps {
        apply(&mut book, &receipt(n).kind).unwrap();
    }
    assert_eq!(book.quantities(&key("A", "W1")).on_hand, STOCK_MAX);
    let refused = apply(&mut book, &receipt(steps).kind).unwrap_err();
    assert!(
        matches!(
            &refused,
            Refusal::Reject(EventError::QuantityOverflow {
                counter: "on_hand",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(book.quantities(&key("A", "W1")).on_hand, STOCK_MAX);
    // Orders: reserved sums the same way.
    let order = |n: usize| {
        Event::validate(&EventInput {
            key: Some(format!("o{n}")),
            kind: Some("order".into()),
            order_id: Some(format!("O{n}")),
            lines: Some(
                (0..1_000)
                    .map(|i| LineInput {
                        line_id: Some(i.to_string()),
                        sku: Some("A".into()),
                        qty: Some(QTY_MAX),
                        location: None,
                    })
                    .collect(),
            ),
            ..EventInput::default()
        })
        .unwrap()
    };
    apply(&mut book, &order(0).kind).unwrap();
    assert_eq!(book.quantities(&key("A", "W1")).reserved, STOCK_MAX);
    let refused = apply(&mut book, &order(1).kind).unwrap_err();
    assert_eq!(
        refused,
        Refusal::Reject(EventError::QuantityOverflow {
            sku: sku("A"),
            location: loc("W1"),
            counter: "reserved",
            bound: STOCK_MAX,
        })
    );
}

/// The state the unchecked ledger could reach (on_hand wrapped near
/// i64::MAX): no event panics on it, and a count repairs it.
#[test]
fn a_wrapped_row_is_refused_not_wrapped_again_and_a_count_repairs_it() {
    let mut book = Book::new([Location {
        id: loc("W1"),
        name: "W1".into(),
        sellable: true,
        priority: 0,
    }]);
    book.load_variant(sku("A"));
    book.load_stock(
        key("A", "W1"),
        Quantities {
            on_hand: i64::MAX - 4,
            ..Quantities::default()
        },
    );
    let event = |kind: &str, f: &dyn Fn(&mut EventInput)| {
        let mut e = EventInput {
            key: Some("k".into()),
            kind: Some(kind.into()),
            sku: Some("A".into()),
            location: Some("W1".into()),
            ..EventInput::default()
        };
        f(&mut e);
        Event::validate(&e).unwrap()
    };
    let receipt = event("receipt", &|e| e.qty = Some(10));
    assert!(matches!(
        apply(&mut book, &receipt.kind),
        Err(Refusal::Reject(EventError::QuantityOverflow { .. }))
    ));
    let count = event("count", &|e| e.on_hand = Some(7));
    apply(&mut book, &count.kind).unwrap();
    assert_eq!(book.quantities(&key("A", "W1")).on_hand, 7);
}

/// Totals over stored rows (stock views, channel and kit pools) never wrap,
/// even over rows beyond the bound (written before it existed).
#[test]
fn totals_over_extreme_rows_do_not_wrap() {
    use stockd_core::availability::{kit_pool, location_pool, ComponentStock};
    let q = |on_hand, reserved| Quantities {
        on_hand,
        reserved,
        ..Quantities::default()
    };
    let rows: Vec<(LocationId, Quantities)> = [
        ("W1", q(i64::MAX, 0)),
        ("W2", q(i64::MAX, 0)),
        ("W3", q(STOCK_MAX, -STOCK_MAX)),
        ("W4", q(i64::MIN, i64::MAX)),
    ]
    .into_iter()
    .map(|(l, q)| (loc(l), q))
    .collect();
    let counted: Vec<LocationId> = ["W1", "W2", "W3"].into_iter().map(loc).collect();
    assert_eq!(location_pool(&rows, &counted).0, i64::MAX);
    let all: Vec<LocationId> = ["W1", "W2", "W3", "W4"].into_iter().map(loc).collect();
    assert!(location_pool(&rows, &all).0 >= 0);
    let component = ComponentStock {
        sku: sku("A"),
        qty_per_kit: 1,
        stock: rows.clone(),
        components: vec![],
    };
    assert_eq!(kit_pool(&rows, &[component], &counted), i64::MAX);
    let view = stockd_core::stock::stock_view(
        sku("A"),
        &rows
            .iter()
            .map(|(l, q)| {
                let location = Location {
                    id: l.clone(),
                    name: l.to_string(),
                    sellable: true,
                    priority: 0,
                };
                (location, *q)
            })
            .collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(view.on_hand, i64::MAX);
    assert!(view.available >= 0 && view.oversold >= 0);
}
