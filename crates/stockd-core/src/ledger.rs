//! Applying one event to the stock it touches. `Book` holds the rows a group
//! of events needs (loaded by a store), records which rows changed, and keeps
//! an undo journal so a refused event or request leaves no trace.

#[cfg(debug_assertions)]
mod invariants;

use crate::catalog::Location;
use crate::event::{EventKind, LineQty, OrderLine, STOCK_MAX};
use crate::ids::{LineId, LocationId, OrderRef, PoId, RmaId, Sku};
use crate::returns::{spread, ReturnLine};
use crate::stock::{InboundKey, InboundLine, Quantities, StockKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One allocation of an order line to a location. A line allocated to two
/// locations has two rows; each unit ends shipped or cancelled, never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationLine {
    pub order: OrderRef,
    pub line_id: LineId,
    /// Order of this allocation within its line (0 = first choice).
    pub alloc_index: i32,
    pub sku: Sku,
    pub location: LocationId,
    pub ordered_qty: i64,
    pub shipped_qty: i64,
    pub cancelled_qty: i64,
    /// Set when the line ordered a kit and this row reserves one of its
    /// components (`sku`); quantities of the row are in component units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kit: Option<KitPart>,
}

/// Which kit a component reservation belongs to, and how many component
/// units one kit takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KitPart {
    pub kit_sku: Sku,
    pub per_kit_qty: i64,
}

impl ReservationLine {
    pub fn open_qty(&self) -> i64 {
        self.ordered_qty - self.shipped_qty - self.cancelled_qty
    }

    /// The SKU the order line asked for (the kit, for a component row).
    pub fn line_sku(&self) -> &Sku {
        self.kit.as_ref().map_or(&self.sku, |k| &k.kit_sku)
    }
}

/// The net change an event made to one stock row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockDelta {
    pub sku: Sku,
    pub location: LocationId,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub on_hand: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_return: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written_off: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inbound: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Something worth recording about an applied event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// An order line could not be covered by available stock when it arrived.
    Oversell {
        line_id: LineId,
        sku: Sku,
        location: LocationId,
        shortfall_qty: i64,
    },
    /// A count or adjust left on_hand below what is reserved.
    BelowReserved {
        sku: Sku,
        location: LocationId,
        on_hand: i64,
        reserved: i64,
    },
    /// More goods arrived than the purchase order line expected.
    OverReceived {
        po_id: PoId,
        sku: Sku,
        location: LocationId,
        extra_qty: i64,
    },
}

/// The result of applying an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub changes: Vec<StockDelta>,
    pub notes: Vec<Note>,
}

/// What an event that cannot be applied yet is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Awaiting {
    Variant(Sku),
    Location(LocationId),
    /// Any sellable location (an order without location, and none exists).
    SellableLocation,
    Order(OrderRef),
    /// A return verified before anything of its RMA was received.
    Return(RmaId),
}

impl Awaiting {
    /// A stable text key, used by stores to find the events a change wakes.
    pub fn wait_key(&self) -> String {
        // Identifiers cannot hold control characters, so a tab separates safely.
        match self {
            Awaiting::Variant(sku) => format!("variant:{sku}"),
            Awaiting::Location(id) => format!("location:{id}"),
            Awaiting::SellableLocation => "location:*".to_string(),
            Awaiting::Order(order) => format!(
                "order:{}\t{}",
                order.channel.as_ref().map(|c| c.as_str()).unwrap_or(""),
                order.order_id
            ),
            Awaiting::Return(rma_id) => format!("rma:{rma_id}"),
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Awaiting::Variant(sku) => format!("unknown sku {sku}"),
            Awaiting::Location(id) => format!("unknown location {id}"),
            Awaiting::SellableLocation => "no sellable location exists".to_string(),
            Awaiting::Order(order) => format!("unknown order {order}"),
            Awaiting::Return(rma_id) => format!("rma {rma_id} not received yet"),
        }
    }
}

/// Why an event was refused. Nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum EventError {
    /// `open` counts kits for a kit line; for a line naming a location, only
    /// the whole kits (every component) reserved at that location.
    #[error("line {line_id}: {requested} requested but only {open} reserved")]
    ReservationExceeded {
        line_id: LineId,
        open: i64,
        requested: i64,
    },
    #[error("order {order} has nothing reserved")]
    NothingReserved { order: String },
    #[error("order {order} has no line {line_id}")]
    UnknownOrderLine { order: String, line_id: LineId },
    #[error("order {order} already has line {line_id}")]
    OrderLineExists { order: String, line_id: LineId },
    #[error("line {line_id} is for sku {actual}, not {given}")]
    LineSkuMismatch {
        line_id: LineId,
        given: Sku,
        actual: Sku,
    },
    #[error("{sku} at {location}: on_hand {on_hand} would become negative")]
    NegativeOnHand {
        sku: Sku,
        location: LocationId,
        on_hand: i64,
    },
    #[error("rma {rma_id}: {requested} verified but only {pending} pending return")]
    ReturnExceeded {
        rma_id: RmaId,
        pending: i64,
        requested: i64,
    },
    /// A verification names a SKU or location the RMA received nothing of.
    #[error("rma {rma_id} received nothing of the given sku and location")]
    ReturnMismatch { rma_id: RmaId },
    /// An event built without `Event::validate` named one line twice.
    #[error("line {line_id} appears twice in this event")]
    DuplicateLine { line_id: LineId },
    /// A counter would leave ±`STOCK_MAX`: refused rather than wrapped or saturated.
    #[error("{sku} at {location}: {counter} would go beyond ±{bound}")]
    QuantityOverflow {
        sku: Sku,
        location: LocationId,
        counter: &'static str,
        bound: i64,
    },
}

impl EventError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::ReservationExceeded { .. } => "reservation_exceeded",
            EventError::NothingReserved { .. } => "nothing_reserved",
            EventError::UnknownOrderLine { .. } => "unknown_order_line",
            EventError::OrderLineExists { .. } => "order_line_exists",
            EventError::LineSkuMismatch { .. } => "line_sku_mismatch",
            EventError::NegativeOnHand { .. } => "negative_on_hand",
            EventError::ReturnExceeded { .. } => "return_exceeded",
            EventError::ReturnMismatch { .. } => "return_mismatch",
            EventError::DuplicateLine { .. } => "duplicate_line",
            EventError::QuantityOverflow { .. } => "quantity_overflow",
        }
    }

    /// The event field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            EventError::ReservationExceeded { .. }
            | EventError::UnknownOrderLine { .. }
            | EventError::OrderLineExists { .. }
            | EventError::LineSkuMismatch { .. }
            | EventError::DuplicateLine { .. } => "lines",
            EventError::NothingReserved { .. } => "order_id",
            EventError::NegativeOnHand { .. } => "delta",
            EventError::ReturnExceeded { .. } => "sellable_qty",
            EventError::ReturnMismatch { .. } => "sku",
            EventError::QuantityOverflow { .. } => "qty",
        }
    }
}

/// Why `apply` did not apply an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It names something not known yet: keep it and replay it later.
    Quarantine(Awaiting),
    /// It contradicts the ledger: refuse it.
    Reject(EventError),
}

enum Undo {
    Stock(StockKey, Option<Quantities>),
    Order(OrderRef, Option<Vec<ReservationLine>>),
    Inbound(InboundKey, Option<InboundLine>),
    Return(RmaId, Option<Vec<ReturnLine>>),
}

/// The rows a group of events works on, with change tracking.
#[derive(Default)]
pub struct Book {
    locations: BTreeMap<LocationId, Location>,
    variants: HashSet<Sku>,
    stock: HashMap<StockKey, Quantities>,
    orders: HashMap<OrderRef, Vec<ReservationLine>>,
    inbound: HashMap<InboundKey, InboundLine>,
    /// Lines of the RMAs named by the events, in the order first received.
    returns: HashMap<RmaId, Vec<ReturnLine>>,
    /// Kit definitions of the kits named by the events: component and units per kit.
    kits: HashMap<Sku, Vec<(Sku, i64)>>,
    dirty_stock: BTreeSet<StockKey>,
    dirty_orders: BTreeSet<OrderRef>,
    dirty_inbound: BTreeSet<InboundKey>,
    dirty_returns: BTreeSet<RmaId>,
    journal: Vec<Undo>,
}

/// A point in the undo journal to roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint(usize);

impl Book {
    pub fn new(locations: impl IntoIterator<Item = Location>) -> Book {
        Book {
            locations: locations.into_iter().map(|l| (l.id.clone(), l)).collect(),
            ..Book::default()
        }
    }

    // Loading: a store fills the book with the rows named by `Needs`.

    /// A kit named by an order: orders for it reserve pre-built kit stock
    /// first and then its components.
    pub fn load_kit(&mut self, kit: Sku, components: Vec<(Sku, i64)>) {
        self.kits.insert(kit, components);
    }
    pub fn load_variant(&mut self, sku: Sku) {
        self.variants.insert(sku);
    }
    pub fn load_stock(&mut self, key: StockKey, quantities: Quantities) {
        self.stock.insert(key, quantities);
    }
    pub fn load_reservation(&mut self, line: ReservationLine) {
        let lines = self.orders.entry(line.order.clone()).or_default();
        lines.push(line);
        lines.sort_by(|a, b| (&a.line_id, a.alloc_index).cmp(&(&b.line_id, b.alloc_index)));
    }
    pub fn load_inbound(&mut self, line: InboundLine) {
        self.inbound.insert(line.key(), line);
    }
    /// The lines of one RMA, in the order they were first received.
    pub fn load_returns(&mut self, rma_id: RmaId, lines: Vec<ReturnLine>) {
        self.returns.insert(rma_id, lines);
    }

    // Reading.

    pub fn quantities(&self, key: &StockKey) -> Quantities {
        self.stock.get(key).copied().unwrap_or_default()
    }
    /// on_hand − reserved at one stock row, floored at 0.
    fn available(&self, key: &StockKey) -> i64 {
        let q = self.quantities(key);
        // Saturating: a row stored before the bound existed may hold any value.
        q.on_hand.saturating_sub(q.reserved).max(0)
    }
    pub fn order_lines(&self, order: &OrderRef) -> Option<&[ReservationLine]> {
        self.orders.get(order).map(Vec::as_slice)
    }
    pub fn inbound_line(&self, key: &InboundKey) -> Option<&InboundLine> {
        self.inbound.get(key)
    }
    pub fn return_lines(&self, rma_id: &RmaId) -> Option<&[ReturnLine]> {
        self.returns.get(rma_id).map(Vec::as_slice)
    }
    pub fn locations(&self) -> impl Iterator<Item = &Location> {
        self.locations.values()
    }

    /// Rows changed since the book was loaded, with their new values.
    pub fn changed_stock(&self) -> impl Iterator<Item = (&StockKey, Quantities)> {
        self.dirty_stock.iter().map(|k| (k, self.quantities(k)))
    }
    /// Orders changed since loading, with all their lines.
    pub fn changed_orders(&self) -> impl Iterator<Item = (&OrderRef, &[ReservationLine])> {
        self.dirty_orders
            .iter()
            .filter_map(|o| self.orders.get(o).map(|lines| (o, lines.as_slice())))
    }
    pub fn changed_inbound(&self) -> impl Iterator<Item = &InboundLine> {
        self.dirty_inbound
            .iter()
            .filter_map(|k| self.inbound.get(k))
    }
    /// RMAs changed since loading, with all their lines.
    pub fn changed_returns(&self) -> impl Iterator<Item = (&RmaId, &[ReturnLine])> {
        self.dirty_returns
            .iter()
            .filter_map(|r| self.returns.get(r).map(|lines| (r, lines.as_slice())))
    }

    // Undo journal.

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.journal.len())
    }

    pub fn rollback(&mut self, to: Checkpoint) {
        while self.journal.len() > to.0 {
            match self.journal.pop() {
                Some(Undo::Stock(key, old)) => restore(&mut self.stock, key, old),
                Some(Undo::Order(key, old)) => restore(&mut self.orders, key, old),
                Some(Undo::Inbound(key, old)) => restore(&mut self.inbound, key, old),
                Some(Undo::Return(key, old)) => restore(&mut self.returns, key, old),
                None => break,
            }
        }
    }

    fn stock_mut(&mut self, key: &StockKey) -> &mut Quantities {
        self.journal
            .push(Undo::Stock(key.clone(), self.stock.get(key).copied()));
        self.dirty_stock.insert(key.clone());
        self.stock.entry(key.clone()).or_default()
    }

    fn order_mut(&mut self, order: &OrderRef) -> &mut Vec<ReservationLine> {
        self.journal
            .push(Undo::Order(order.clone(), self.orders.get(order).cloned()));
        self.dirty_orders.insert(order.clone());
        self.orders.entry(order.clone()).or_default()
    }

    fn returns_mut(&mut self, rma_id: &RmaId) -> &mut Vec<ReturnLine> {
        self.journal.push(Undo::Return(
            rma_id.clone(),
            self.returns.get(rma_id).cloned(),
        ));
        self.dirty_returns.insert(rma_id.clone());
        self.returns.entry(rma_id.clone()).or_default()
    }

    fn set_inbound(&mut self, line: InboundLine) {
        let key = line.key();
        self.journal
            .push(Undo::Inbound(key.clone(), self.inbound.get(&key).cloned()));
        self.dirty_inbound.insert(key.clone());
        self.inbound.insert(key, line);
    }

    fn sellable_by_priority(&self) -> Vec<LocationId> {
        let mut sellable: Vec<&Location> = self.locations.values().filter(|l| l.sellable).collect();
        sellable.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        sellable.into_iter().map(|l| l.id.clone()).collect()
    }

    fn require_known(&self, sku: &Sku, location: Option<&LocationId>) -> Result<(), Refusal> {
        if !self.variants.contains(sku) {
            return Err(Refusal::Quarantine(Awaiting::Variant(sku.clone())));
        }
        if let Some(location) = location {
            if !self.locations.contains_key(location) {
                return Err(Refusal::Quarantine(Awaiting::Location(location.clone())));
            }
        }
        Ok(())
    }
}

fn restore<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(value) => map.insert(key, value),
        None => map.remove(&key),
    };
}

/// Accumulates per-row deltas in the order rows were first touched.
#[derive(Default)]
struct Deltas(Vec<StockDelta>);

impl Deltas {
    fn row(&mut self, key: &StockKey) -> &mut StockDelta {
        let at = match self
            .0
            .iter()
            .position(|d| d.sku == key.sku && d.location == key.location)
        {
            Some(at) => at,
            None => {
                self.0.push(StockDelta {
                    sku: key.sku.clone(),
                    location: key.location.clone(),
                    on_hand: 0,
                    reserved: 0,
                    pending_return: 0,
                    written_off: 0,
                    inbound: 0,
                });
                self.0.len() - 1
            }
        };
        &mut self.0[at]
    }
}

fn key(sku: &Sku, location: &LocationId) -> StockKey {
    StockKey {
        sku: sku.clone(),
        location: location.clone(),
    }
}

/// A stored counter of a stock row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    OnHand,
    Reserved,
    PendingReturn,
    WrittenOff,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::OnHand => "on_hand",
            Counter::Reserved => "reserved",
            Counter::PendingReturn => "pending_return",
            Counter::WrittenOff => "written_off",
        }
    }
}

fn overflow(k: &StockKey, counter: &'static str) -> Refusal {
    Refusal::Reject(EventError::QuantityOverflow {
        sku: k.sku.clone(),
        location: k.location.clone(),
        counter,
        bound: STOCK_MAX,
    })
}

/// `value + by` when it stays within ±`STOCK_MAX`.
pub fn bounded_add(value: i64, by: i64) -> Option<i64> {
    value
        .checked_add(by)
        .filter(|v| v.unsigned_abs() <= STOCK_MAX.unsigned_abs())
}

/// Moves one counter of one stock row by `by` (and records the delta), or
/// refuses the event when the counter would leave ±`STOCK_MAX`. Every
/// quantity change of the ledger goes through here.
fn bump(
    book: &mut Book,
    deltas: &mut Deltas,
    k: &StockKey,
    counter: Counter,
    by: i64,
) -> Result<(), Refusal> {
    let q = book.quantities(k);
    let old = match counter {
        Counter::OnHand => q.on_hand,
        Counter::Reserved => q.reserved,
        Counter::PendingReturn => q.pending_return,
        Counter::WrittenOff => q.written_off,
    };
    let new = bounded_add(old, by).ok_or_else(|| overflow(k, counter.name()))?;
    let q = book.stock_mut(k);
    let d = deltas.row(k);
    // Both ends lie within ±STOCK_MAX, so a delta (the net change of one
    // event) cannot overflow either.
    match counter {
        Counter::OnHand => {
            q.on_hand = new;
            d.on_hand += by;
        }
        Counter::Reserved => {
            q.reserved = new;
            d.reserved += by;
        }
        Counter::PendingReturn => {
            q.pending_return = new;
            d.pending_return += by;
        }
        Counter::WrittenOff => {
            q.written_off = new;
            d.written_off += by;
        }
    }
    Ok(())
}

/// Applies one event to the book. On refusal the book is left as it was.
pub fn apply(book: &mut Book, event: &EventKind) -> Result<Applied, Refusal> {
    // `Event::validate` refuses a line named twice; an event built without it
    // must not reach the rules, which assume every line is named once.
    if let Some(line_id) = duplicate_line(event) {
        return Err(Refusal::Reject(EventError::DuplicateLine {
            line_id: line_id.clone(),
        }));
    }
    #[cfg(debug_assertions)]
    let before = invariants::Before::take(book, event);
    let checkpoint = book.checkpoint();
    let result = apply_unchecked(book, event);
    if result.is_err() {
        book.rollback(checkpoint);
    }
    // The invariants are asserted where they are kept, after every event.
    #[cfg(debug_assertions)]
    if let Ok(applied) = &result {
        before.check(book, applied);
    }
    result
}

/// The first line id an order, cancel or ship event names more than once.
fn duplicate_line(event: &EventKind) -> Option<&LineId> {
    let ids: Vec<&LineId> = match event {
        EventKind::Order { lines, .. } => lines.iter().map(|l| &l.line_id).collect(),
        EventKind::Cancel {
            lines: Some(lines), ..
        }
        | EventKind::Ship {
            lines: Some(lines), ..
        } => lines.iter().map(|l| &l.line_id).collect(),
        _ => return None,
    };
    let mut seen = HashSet::with_capacity(ids.len());
    ids.into_iter().find(|id| !seen.insert(*id))
}

fn apply_unchecked(book: &mut Book, event: &EventKind) -> Result<Applied, Refusal> {
    let mut deltas = Deltas::default();
    let mut notes = Vec::new();
    match event {
        EventKind::Receipt {
            sku, location, qty, ..
        } => {
            book.require_known(sku, Some(location))?;
            bump(
                book,
                &mut deltas,
                &key(sku, location),
                Counter::OnHand,
                *qty,
            )?;
        }
        EventKind::Adjust {
            sku,
            location,
            delta,
            ..
        } => {
            book.require_known(sku, Some(location))?;
            let k = key(sku, location);
            let q = book.quantities(&k);
            // Only a decrease is refused: a correction upwards goes through
            // even when a shipment left on_hand negative.
            let on_hand = bounded_add(q.on_hand, *delta).ok_or_else(|| overflow(&k, "on_hand"))?;
            if *delta < 0 && on_hand < 0 {
                return Err(Refusal::Reject(EventError::NegativeOnHand {
                    sku: sku.clone(),
                    location: location.clone(),
                    on_hand: q.on_hand,
                }));
            }
            set_on_hand(book, &k, on_hand, &mut deltas, &mut notes)?;
        }
        EventKind::Count {
            sku,
            location,
            on_hand,
            ..
        } => {
            book.require_known(sku, Some(location))?;
            set_on_hand(book, &key(sku, location), *on_hand, &mut deltas, &mut notes)?;
        }
        EventKind::Order { order, lines } => {
            apply_order(book, order, lines, &mut deltas, &mut notes)?;
        }
        EventKind::Cancel { order, lines, .. } => {
            settle(book, order, lines.as_deref(), Settle::Cancel, &mut deltas)?;
        }
        EventKind::Ship { order, lines } => {
            settle(book, order, lines.as_deref(), Settle::Ship, &mut deltas)?;
        }
        EventKind::ReturnReceived {
            rma_id,
            sku,
            location,
            qty,
        } => {
            book.require_known(sku, Some(location))?;
            let k = key(sku, location);
            bump(book, &mut deltas, &k, Counter::PendingReturn, *qty)?;
            let lines = book.returns_mut(rma_id);
            match lines
                .iter_mut()
                .find(|l| l.sku == *sku && l.location == *location)
            {
                Some(line) => {
                    line.received_qty = bounded_add(line.received_qty, *qty)
                        .ok_or_else(|| overflow(&k, "received_qty"))?;
                }
                None => lines.push(ReturnLine {
                    sku: sku.clone(),
                    location: location.clone(),
                    received_qty: *qty,
                    sellable_qty: 0,
                    unsellable_qty: 0,
                }),
            }
        }
        EventKind::ReturnVerified {
            rma_id,
            sku,
            location,
            sellable_qty,
            unsellable_qty,
        } => {
            verify_return(
                book,
                rma_id,
                sku.as_ref(),
                location.as_ref(),
                (*sellable_qty, *unsellable_qty),
                &mut deltas,
            )?;
        }
        EventKind::Inbound {
            po_id,
            sku,
            location,
            qty,
            eta,
            confirmed,
        } => {
            book.require_known(sku, Some(location))?;
            let line = InboundLine {
                po_id: po_id.clone(),
                sku: sku.clone(),
                location: location.clone(),
                qty: *qty,
                eta: *eta,
                confirmed: *confirmed,
            };
            let before = book.inbound_line(&line.key()).map_or(0, |l| l.qty);
            deltas.row(&key(sku, location)).inbound += qty - before;
            book.set_inbound(line);
        }
        EventKind::InboundReceived {
            po_id,
            sku,
            location,
            qty,
        } => {
            book.require_known(sku, Some(location))?;
            let k = key(sku, location);
            let inbound_key = InboundKey {
                po_id: po_id.clone(),
                sku: sku.clone(),
                location: location.clone(),
            };
            let expected = book.inbound_line(&inbound_key).cloned();
            let open = expected.as_ref().map_or(0, |l| l.qty);
            let from_inbound = open.min(*qty);
            if let Some(mut line) = expected {
                line.qty -= from_inbound;
                book.set_inbound(line);
            }
            if *qty > open {
                notes.push(Note::OverReceived {
                    po_id: po_id.clone(),
                    sku: sku.clone(),
                    location: location.clone(),
                    extra_qty: qty - open,
                });
            }
            bump(book, &mut deltas, &k, Counter::OnHand, *qty)?;
            deltas.row(&k).inbound -= from_inbound;
        }
    }
    Ok(Applied {
        changes: deltas.0,
        notes,
    })
}

/// Settles units of one RMA: sellable ones go back on hand, the rest is
/// written off; each line's stock row gives up as much pending_return.
fn verify_return(
    book: &mut Book,
    rma_id: &RmaId,
    sku: Option<&Sku>,
    location: Option<&LocationId>,
    (sellable_qty, unsellable_qty): (i64, i64),
    deltas: &mut Deltas,
) -> Result<(), Refusal> {
    let lines = match book.return_lines(rma_id) {
        Some(lines) if !lines.is_empty() => lines.to_vec(),
        _ => return Err(Refusal::Quarantine(Awaiting::Return(rma_id.clone()))),
    };
    let matching: Vec<usize> = (0..lines.len())
        .filter(|&i| sku.is_none_or(|s| lines[i].sku == *s))
        .filter(|&i| location.is_none_or(|l| lines[i].location == *l))
        .collect();
    if matching.is_empty() {
        return Err(Refusal::Reject(EventError::ReturnMismatch {
            rma_id: rma_id.clone(),
        }));
    }
    // Both are at most QTY_MAX, and each line's pending within ±STOCK_MAX.
    let requested = sellable_qty + unsellable_qty;
    let pending: i64 = matching
        .iter()
        .map(|&i| lines[i].pending_qty().max(0))
        .fold(0i64, |sum, p| sum.saturating_add(p));
    if requested > pending {
        return Err(Refusal::Reject(EventError::ReturnExceeded {
            rma_id: rma_id.clone(),
            pending,
            requested,
        }));
    }
    for (i, sellable, unsellable) in spread(&lines, &matching, sellable_qty, unsellable_qty) {
        let k = key(&lines[i].sku, &lines[i].location);
        // The row's pool must hold what the RMA has pending (it always does
        // for returns received since RMAs were tracked).
        let pool = book.quantities(&k).pending_return;
        if pool < sellable + unsellable {
            return Err(Refusal::Reject(EventError::ReturnExceeded {
                rma_id: rma_id.clone(),
                pending: pool,
                requested,
            }));
        }
        bump(
            book,
            deltas,
            &k,
            Counter::PendingReturn,
            -(sellable + unsellable),
        )?;
        bump(book, deltas, &k, Counter::OnHand, sellable)?;
        bump(book, deltas, &k, Counter::WrittenOff, unsellable)?;
        let line = &mut book.returns_mut(rma_id)[i];
        line.sellable_qty += sellable;
        line.unsellable_qty += unsellable;
    }
    Ok(())
}

fn set_on_hand(
    book: &mut Book,
    k: &StockKey,
    on_hand: i64,
    deltas: &mut Deltas,
    notes: &mut Vec<Note>,
) -> Result<(), Refusal> {
    let q = book.quantities(k);
    // Both within ±STOCK_MAX (a stored counter, a validated quantity).
    let change = on_hand
        .checked_sub(q.on_hand)
        .ok_or_else(|| overflow(k, "on_hand"))?;
    bump(book, deltas, k, Counter::OnHand, change)?;
    let reserved = q.reserved;
    if on_hand < reserved {
        notes.push(Note::BelowReserved {
            sku: k.sku.clone(),
            location: k.location.clone(),
            on_hand,
            reserved,
        });
    }
    Ok(())
}

fn apply_order(
    book: &mut Book,
    order: &OrderRef,
    lines: &[OrderLine],
    deltas: &mut Deltas,
    notes: &mut Vec<Note>,
) -> Result<(), Refusal> {
    for line in lines {
        book.require_known(&line.sku, line.location.as_ref())?;
        if let Some(components) = book.kits.get(&line.sku) {
            for (component, _) in components {
                book.require_known(component, None)?;
            }
        }
    }
    let sellable = book.sellable_by_priority();
    if sellable.is_empty() && lines.iter().any(|l| l.location.is_none()) {
        return Err(Refusal::Quarantine(Awaiting::SellableLocation));
    }
    let existing = book.order_lines(order).unwrap_or(&[]);
    if let Some(line) = lines
        .iter()
        .find(|l| existing.iter().any(|e| e.line_id == l.line_id))
    {
        return Err(Refusal::Reject(EventError::OrderLineExists {
            order: order.to_string(),
            line_id: line.line_id.clone(),
        }));
    }
    for line in lines {
        let candidates = match &line.location {
            Some(location) => vec![location.clone()],
            None => sellable.clone(),
        };
        let mut rows: Vec<(Sku, LocationId, i64, Option<KitPart>)> = Vec::new();
        match book.kits.get(&line.sku).cloned() {
            None => {
                let (allocations, shortfall) = allocate(book, &line.sku, line.qty, &candidates);
                if shortfall > 0 {
                    notes.push(oversell(line, &line.sku, &candidates[0], shortfall));
                }
                rows.extend(
                    allocations
                        .into_iter()
                        .map(|(location, qty)| (line.sku.clone(), location, qty, None)),
                );
            }
            Some(components) => {
                // A kit ships pre-built units where there are any; the rest
                // is assembled, so it reserves the components.
                let mut remaining = line.qty;
                for location in &candidates {
                    let take = book.available(&key(&line.sku, location)).min(remaining);
                    if take > 0 {
                        rows.push((line.sku.clone(), location.clone(), take, None));
                        remaining -= take;
                    }
                }
                if remaining > 0 {
                    for (component, per_kit_qty) in components {
                        let units = remaining
                            .checked_mul(per_kit_qty)
                            .filter(|u| *u <= STOCK_MAX)
                            .ok_or_else(|| {
                                overflow(&key(&component, &candidates[0]), "reserved")
                            })?;
                        let (allocations, shortfall) =
                            allocate(book, &component, units, &candidates);
                        if shortfall > 0 {
                            notes.push(oversell(line, &component, &candidates[0], shortfall));
                        }
                        let part = KitPart {
                            kit_sku: line.sku.clone(),
                            per_kit_qty,
                        };
                        rows.extend(allocations.into_iter().map(|(location, qty)| {
                            (component.clone(), location, qty, Some(part.clone()))
                        }));
                    }
                }
            }
        }
        for (alloc_index, (sku, location, qty, kit)) in rows.into_iter().enumerate() {
            let k = key(&sku, &location);
            bump(book, deltas, &k, Counter::Reserved, qty)?;
            book.order_mut(order).push(ReservationLine {
                order: order.clone(),
                line_id: line.line_id.clone(),
                alloc_index: alloc_index as i32,
                sku,
                location,
                ordered_qty: qty,
                shipped_qty: 0,
                cancelled_qty: 0,
                kit,
            });
        }
    }
    Ok(())
}

/// Splits `qty` units of `sku` over `candidates` in order, taking what is
/// available at each; what no location can cover (the shortfall, returned)
/// stays reserved at the first candidate.
fn allocate(
    book: &Book,
    sku: &Sku,
    qty: i64,
    candidates: &[LocationId],
) -> (Vec<(LocationId, i64)>, i64) {
    let mut remaining = qty;
    let mut allocations: Vec<(LocationId, i64)> = Vec::new();
    for location in candidates {
        let take = book.available(&key(sku, location)).min(remaining);
        if take > 0 {
            allocations.push((location.clone(), take));
            remaining -= take;
        }
    }
    if remaining > 0 {
        match allocations.iter_mut().find(|(l, _)| *l == candidates[0]) {
            Some((_, qty)) => *qty += remaining,
            None => allocations.insert(0, (candidates[0].clone(), remaining)),
        }
    }
    (allocations, remaining)
}

fn oversell(line: &OrderLine, sku: &Sku, location: &LocationId, shortfall_qty: i64) -> Note {
    Note::Oversell {
        line_id: line.line_id.clone(),
        sku: sku.clone(),
        location: location.clone(),
        shortfall_qty,
    }
}

/// Splits a line's rows into plain rows and component rows grouped by
/// component (with units per kit), both in allocation order.
fn kit_parts(existing: &[ReservationLine], rows: &[usize]) -> (Vec<usize>, Vec<(i64, Vec<usize>)>) {
    let mut plain = Vec::new();
    let mut parts: Vec<(Sku, i64, Vec<usize>)> = Vec::new();
    for &i in rows {
        match &existing[i].kit {
            None => plain.push(i),
            Some(part) => match parts.iter_mut().find(|(sku, _, _)| *sku == existing[i].sku) {
                Some((_, _, rows)) => rows.push(i),
                None => parts.push((existing[i].sku.clone(), part.per_kit_qty.max(1), vec![i])),
            },
        }
    }
    (
        plain,
        parts
            .into_iter()
            .map(|(_, per_kit, rows)| (per_kit, rows))
            .collect(),
    )
}

/// Settles `amount` units over `rows` (of one SKU group), returning
/// (row, units) in the order taken. A cancel releases the last choice first;
/// a ship takes, in allocation order, what each row's location still has on
/// hand beyond what this ship already took there — so a location without
/// stock is not driven negative while another has it — and only then the
/// rest (a ship is a fact from the warehouse: on_hand may go negative).
fn take_rows(
    book: &Book,
    existing: &[ReservationLine],
    rows: &[usize],
    amount: i64,
    how: Settle,
    taken: &mut HashMap<StockKey, i64>,
) -> Vec<(usize, i64)> {
    let mut takes = vec![0; rows.len()];
    let mut remaining = amount;
    match how {
        Settle::Cancel => {
            for (at, &i) in rows.iter().enumerate().rev() {
                let take = existing[i].open_qty().min(remaining);
                takes[at] = take;
                remaining -= take;
            }
        }
        Settle::Ship => {
            for (at, &i) in rows.iter().enumerate() {
                let k = key(&existing[i].sku, &existing[i].location);
                let already = taken.get(&k).copied().unwrap_or(0);
                let on_hand = book.quantities(&k).on_hand.saturating_sub(already).max(0);
                let take = existing[i].open_qty().min(on_hand).min(remaining);
                takes[at] = take;
                remaining -= take;
                *taken.entry(k).or_default() += take;
            }
            for (at, &i) in rows.iter().enumerate() {
                let take = (existing[i].open_qty() - takes[at]).min(remaining);
                takes[at] += take;
                remaining -= take;
                let k = key(&existing[i].sku, &existing[i].location);
                *taken.entry(k).or_default() += take;
            }
        }
    }
    let mut settled: Vec<(usize, i64)> = rows
        .iter()
        .zip(takes)
        .filter(|&(_, take)| take > 0)
        .map(|(&i, take)| (i, take))
        .collect();
    // A cancel lists what it released last choice first.
    if how == Settle::Cancel {
        settled.reverse();
    }
    settled
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Cancel,
    Ship,
}

/// Ends reservations: cancel releases them, ship consumes them.
fn settle(
    book: &mut Book,
    order: &OrderRef,
    lines: Option<&[LineQty]>,
    how: Settle,
    deltas: &mut Deltas,
) -> Result<(), Refusal> {
    let Some(existing) = book.order_lines(order) else {
        return Err(Refusal::Quarantine(Awaiting::Order(order.clone())));
    };
    // (row index in the order, qty to settle) for every allocation touched.
    let mut plan: Vec<(usize, i64)> = Vec::new();
    // Units this ship already takes at each stock row, over all its lines.
    let mut taken: HashMap<StockKey, i64> = HashMap::new();
    let requests: Vec<(LineId, Option<i64>, Option<&LocationId>)> = match lines {
        Some(lines) => {
            for line in lines {
                let Some(first) = existing.iter().find(|e| e.line_id == line.line_id) else {
                    return Err(Refusal::Reject(EventError::UnknownOrderLine {
                        order: order.to_string(),
                        line_id: line.line_id.clone(),
                    }));
                };
                if let Some(sku) = &line.sku {
                    if sku != first.line_sku() {
                        return Err(Refusal::Reject(EventError::LineSkuMismatch {
                            line_id: line.line_id.clone(),
                            given: sku.clone(),
                            actual: first.line_sku().clone(),
                        }));
                    }
                }
            }
            lines
                .iter()
                .map(|l| (l.line_id.clone(), l.qty, l.location.as_ref()))
                .collect()
        }
        None => {
            let mut ids: Vec<LineId> = existing
                .iter()
                .filter(|e| e.open_qty() > 0)
                .map(|e| e.line_id.clone())
                .collect();
            ids.dedup();
            if ids.is_empty() {
                return Err(Refusal::Reject(EventError::NothingReserved {
                    order: order.to_string(),
                }));
            }
            ids.into_iter().map(|id| (id, None, None)).collect()
        }
    };
    for (line_id, qty, location) in &requests {
        let line_rows: Vec<usize> = (0..existing.len())
            .filter(|&i| existing[i].line_id == *line_id)
            .collect();
        let rows: Vec<usize> = line_rows
            .iter()
            .copied()
            .filter(|&i| location.is_none_or(|l| existing[i].location == *l))
            .collect();
        // A kit line has plain rows (pre-built kits) and, per component,
        // rows in component units; its open quantity is counted in kits.
        let (plain, parts) = kit_parts(existing, &rows);
        // Settled at one location, a kit needs every component there: one
        // reserved only elsewhere leaves the location no whole kit to settle.
        let components_on_line = kit_parts(existing, &line_rows).1.len();
        let every_component_here = parts.len() == components_on_line;
        let line_overflow = || {
            let first = &existing[rows.first().copied().unwrap_or(0)];
            overflow(&key(&first.sku, &first.location), "reserved")
        };
        let plain_open = open_sum(existing, &plain).ok_or_else(line_overflow)?;
        let mut parts_open: Option<i64> = None;
        for (per_kit, part_rows) in &parts {
            let kits = open_sum(existing, part_rows).ok_or_else(line_overflow)? / per_kit;
            parts_open = Some(parts_open.map_or(kits, |p| p.min(kits)));
        }
        let parts_open = parts_open.filter(|_| every_component_here).unwrap_or(0);
        let open = bounded_add(plain_open, parts_open).ok_or_else(line_overflow)?;
        let requested = qty.unwrap_or(open);
        if open == 0 || requested > open {
            return Err(Refusal::Reject(EventError::ReservationExceeded {
                line_id: line_id.clone(),
                open,
                requested,
            }));
        }
        // Pre-built kits ship first and are released last: the reverse of
        // how the order reserved them.
        let from_plain = match how {
            Settle::Ship => requested.min(plain_open),
            Settle::Cancel => requested - requested.min(parts_open),
        };
        let from_parts = requested - from_plain;
        let plain_plan = take_rows(book, existing, &plain, from_plain, how, &mut taken);
        let mut parts_plan = Vec::new();
        for (per_kit, part_rows) in &parts {
            // from_parts ≤ parts_open, and parts_open × per_kit ≤ the rows' open sum.
            let units = from_parts.checked_mul(*per_kit).ok_or_else(line_overflow)?;
            parts_plan.push(take_rows(book, existing, part_rows, units, how, &mut taken));
        }
        // The plan lists rows in the order they are settled: a cancel walks
        // the allocation backwards.
        match how {
            Settle::Ship => {
                plan.extend(plain_plan);
                plan.extend(parts_plan.into_iter().flatten());
            }
            Settle::Cancel => {
                plan.extend(parts_plan.into_iter().rev().flatten());
                plan.extend(plain_plan);
            }
        }
    }
    let touched: Vec<(StockKey, i64)> = plan
        .iter()
        .map(|&(i, qty)| (key(&existing[i].sku, &existing[i].location), qty))
        .collect();
    let rows = book.order_mut(order);
    for &(i, qty) in &plan {
        match how {
            Settle::Cancel => rows[i].cancelled_qty += qty,
            Settle::Ship => rows[i].shipped_qty += qty,
        }
    }
    for (k, qty) in touched {
        bump(book, deltas, &k, Counter::Reserved, -qty)?;
        if how == Settle::Ship {
            bump(book, deltas, &k, Counter::OnHand, -qty)?;
        }
    }
    Ok(())
}

/// Σ open quantity of `rows`, or `None` when it would leave ±`STOCK_MAX`.
fn open_sum(existing: &[ReservationLine], rows: &[usize]) -> Option<i64> {
    rows.iter()
        .try_fold(0i64, |sum, &i| bounded_add(sum, existing[i].open_qty()))
}
