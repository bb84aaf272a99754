//! Events: the only way stock changes. `EventInput` is what a client sends
//! (every field optional, unknown fields rejected); `Event::validate` turns it
//! into an `Event` whose shape is right for its type, or names every field
//! that is wrong.

use crate::ids::{
    ChannelId, IdError, IdempotencyKey, LineId, LocationId, OrderId, OrderRef, PoId, RmaId, Sku,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The one bound on every quantity and delta an event carries: a quantity is
/// at most `QTY_MAX`, a delta at most `QTY_MAX` in absolute value.
pub const QTY_MAX: i64 = 1_000_000_000;
/// The bound on every stored counter (on_hand, reserved, pending_return,
/// written_off, inbound, a return's quantities), in absolute value: an event
/// that would move one beyond it is refused (`quantity_overflow`). With it, a
/// sum over a million counters still fits an `i64`, so no total computed from
/// stored stock (stock views, channel pools, kit pools, rule steps) can wrap.
pub const STOCK_MAX: i64 = 1_000_000_000_000;
/// Most lines one order, cancel or ship event may carry.
pub const LINES_MAX: usize = 1_000;
/// Longest free text (reason, source).
pub const TEXT_LEN_MAX: usize = 1_000;

/// An event as received, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub key: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub sku: Option<String>,
    pub location: Option<String>,
    pub qty: Option<i64>,
    pub delta: Option<i64>,
    pub on_hand: Option<i64>,
    pub reason: Option<String>,
    pub channel: Option<String>,
    pub order_id: Option<String>,
    pub lines: Option<Vec<LineInput>>,
    pub rma_id: Option<String>,
    pub sellable_qty: Option<i64>,
    pub unsellable_qty: Option<i64>,
    pub po_id: Option<String>,
    pub eta: Option<String>,
    pub confirmed: Option<bool>,
    pub occurred_at: Option<String>,
    pub source: Option<String>,
}

/// One order line as received.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    pub line_id: Option<String>,
    pub sku: Option<String>,
    pub qty: Option<i64>,
    pub location: Option<String>,
}

/// A validation problem with one field of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A validated event. It serializes in the form clients send (absent
/// fields omitted), which is also its canonical form for payload hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub key: IdempotencyKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event does, with exactly the fields its type needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Goods arrived without a purchase order: on_hand rises.
    Receipt {
        sku: Sku,
        location: LocationId,
        qty: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A correction by `delta` units, with the reason.
    Adjust {
        sku: Sku,
        location: LocationId,
        delta: i64,
        reason: String,
    },
    /// A cycle count: on_hand becomes exactly `on_hand`.
    Count {
        sku: Sku,
        location: LocationId,
        on_hand: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A channel sold: reserve the lines.
    Order {
        #[serde(flatten)]
        order: OrderRef,
        lines: Vec<OrderLine>,
    },
    /// Release reservations: the whole order (`lines` absent) or given lines.
    Cancel {
        #[serde(flatten)]
        order: OrderRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<Vec<LineQty>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Consume reservations: on_hand and reserved both drop.
    Ship {
        #[serde(flatten)]
        order: OrderRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<Vec<LineQty>>,
    },
    /// A return arrived; it is not sellable until verified.
    ReturnReceived {
        rma_id: RmaId,
        sku: Sku,
        location: LocationId,
        qty: i64,
    },
    /// A return was inspected: sellable units go back on hand, the rest is written off.
    ///
    /// It settles units of its RMA only: `sellable_qty + unsellable_qty` is
    /// checked against what that RMA has pending (on its lines of `sku` and
    /// `location` when given). An RMA not received yet is waited for.
    ReturnVerified {
        rma_id: RmaId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sku: Option<Sku>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
        sellable_qty: i64,
        unsellable_qty: i64,
    },
    /// A purchase order line (replaces an earlier one for the same PO, SKU and location).
    ///
    /// `qty` is the quantity still expected on this PO line: an absolute value
    /// that replaces the earlier one, not a change to it. After a partial
    /// receipt, send the quantity that remains (0 when nothing does).
    Inbound {
        po_id: PoId,
        sku: Sku,
        location: LocationId,
        qty: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta: Option<NaiveDate>,
        confirmed: bool,
    },
    /// Goods of a purchase order arrived: inbound becomes on_hand.
    InboundReceived {
        po_id: PoId,
        sku: Sku,
        location: LocationId,
        qty: i64,
    },
}

/// One line of an order event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: LineId,
    pub sku: Sku,
    pub qty: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationId>,
}

/// One line of a cancel or ship event: `qty` absent means all that is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineQty {
    pub line_id: LineId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationId>,
}

/// The event types, as named on the wire.
pub const EVENT_TYPES: [&str; 10] = [
    "receipt",
    "adjust",
    "count",
    "order",
    "cancel",
    "ship",
    "return_received",
    "return_verified",
    "inbound",
    "inbound_received",
];

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Receipt { .. } => "receipt",
            EventKind::Adjust { .. } => "adjust",
            EventKind::Count { .. } => "count",
            EventKind::Order { .. } => "order",
            EventKind::Cancel { .. } => "cancel",
            EventKind::Ship { .. } => "ship",
            EventKind::ReturnReceived { .. } => "return_received",
            EventKind::ReturnVerified { .. } => "return_verified",
            EventKind::Inbound { .. } => "inbound",
            EventKind::InboundReceived { .. } => "inbound_received",
        }
    }

    /// SKUs the event names directly (an order's lines, or its one SKU).
    pub fn skus(&self) -> Vec<&Sku> {
        match self {
            EventKind::Receipt { sku, .. }
            | EventKind::Adjust { sku, .. }
            | EventKind::Count { sku, .. }
            | EventKind::ReturnReceived { sku, .. }
            | EventKind::Inbound { sku, .. }
            | EventKind::InboundReceived { sku, .. } => vec![sku],
            EventKind::ReturnVerified { sku, .. } => sku.iter().collect(),
            EventKind::Order { lines, .. } => lines.iter().map(|l| &l.sku).collect(),
            EventKind::Cancel { .. } | EventKind::Ship { .. } => Vec::new(),
        }
    }

    /// The RMA a return event refers to.
    pub fn rma_id(&self) -> Option<&RmaId> {
        match self {
            EventKind::ReturnReceived { rma_id, .. } | EventKind::ReturnVerified { rma_id, .. } => {
                Some(rma_id)
            }
            _ => None,
        }
    }

    /// The order a cancel or ship event refers to.
    pub fn order_ref(&self) -> Option<&OrderRef> {
        match self {
            EventKind::Order { order, .. }
            | EventKind::Cancel { order, .. }
            | EventKind::Ship { order, .. } => Some(order),
            _ => None,
        }
    }
}

/// Which fields each event type takes; everything else is rejected.
fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "receipt" => &["sku", "location", "qty", "reason"],
        "adjust" => &["sku", "location", "delta", "reason"],
        "count" => &["sku", "location", "on_hand", "reason"],
        "order" => &["channel", "order_id", "lines"],
        "cancel" => &["channel", "order_id", "lines", "reason"],
        "ship" => &["channel", "order_id", "lines"],
        "return_received" => &["rma_id", "sku", "location", "qty"],
        "return_verified" => &[
            "rma_id",
            "sku",
            "location",
            "sellable_qty",
            "unsellable_qty",
        ],
        "inbound" => &["po_id", "sku", "location", "qty", "eta", "confirmed"],
        "inbound_received" => &["po_id", "sku", "location", "qty"],
        _ => &[],
    }
}

/// Collects field errors while a validation walks an input.
struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn id<T>(
        &mut self,
        field: &str,
        raw: &Option<String>,
        parse: fn(String) -> Result<T, IdError>,
    ) -> Option<T> {
        match raw {
            None => {
                self.fail(field, "is required");
                None
            }
            Some(raw) => self.id_opt(field, &Some(raw.clone()), parse),
        }
    }

    fn id_opt<T>(
        &mut self,
        field: &str,
        raw: &Option<String>,
        parse: fn(String) -> Result<T, IdError>,
    ) -> Option<T> {
        let raw = raw.as_ref()?;
        match parse(raw.clone()) {
            Ok(id) => Some(id),
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }

    /// A required quantity within `min..=QTY_MAX`.
    fn qty(&mut self, field: &str, raw: Option<i64>, min: i64) -> Option<i64> {
        match raw {
            None => {
                self.fail(field, "is required");
                None
            }
            Some(q) if q < min => {
                self.fail(field, format!("must be at least {min}"));
                None
            }
            Some(q) if q > QTY_MAX => {
                self.fail(field, format!("must be at most {QTY_MAX}"));
                None
            }
            Some(q) => Some(q),
        }
    }

    fn text(&mut self, field: &str, raw: &Option<String>) -> Option<String> {
        let raw = raw.as_ref()?;
        if raw.chars().count() > TEXT_LEN_MAX {
            self.fail(field, format!("must be at most {TEXT_LEN_MAX} characters"));
            return None;
        }
        Some(raw.clone())
    }
}

fn present_fields(input: &EventInput) -> Vec<&'static str> {
    let mut present = Vec::new();
    let mut mark = |name: &'static str, is: bool| {
        if is {
            present.push(name);
        }
    };
    mark("sku", input.sku.is_some());
    mark("location", input.location.is_some());
    mark("qty", input.qty.is_some());
    mark("delta", input.delta.is_some());
    mark("on_hand", input.on_hand.is_some());
    mark("reason", input.reason.is_some());
    mark("channel", input.channel.is_some());
    mark("order_id", input.order_id.is_some());
    mark("lines", input.lines.is_some());
    mark("rma_id", input.rma_id.is_some());
    mark("sellable_qty", input.sellable_qty.is_some());
    mark("unsellable_qty", input.unsellable_qty.is_some());
    mark("po_id", input.po_id.is_some());
    mark("eta", input.eta.is_some());
    mark("confirmed", input.confirmed.is_some());
    present
}

impl Event {
    /// Validates a received event. Every problem is reported, not just the first.
    pub fn validate(input: &EventInput) -> Result<Event, Vec<FieldError>> {
        let mut c = Check { errors: Vec::new() };
        let key = c.id("key", &input.key, IdempotencyKey::parse);
        let occurred_at =
            input
                .occurred_at
                .as_ref()
                .and_then(|raw| match DateTime::parse_from_rfc3339(raw) {
                    Ok(t) => Some(t.with_timezone(&Utc)),
                    Err(_) => {
                        c.fail("occurred_at", "must be an RFC 3339 date-time");
                        None
                    }
                });
        let source = c.text("source", &input.source);
        let type_name = match input.kind.as_deref() {
            None => {
                c.fail("type", "is required");
                return Err(c.errors);
            }
            Some(t) if !EVENT_TYPES.contains(&t) => {
                c.fail(
                    "type",
                    format!(
                        "unknown event type; expected one of {}",
                        EVENT_TYPES.join(", ")
                    ),
                );
                return Err(c.errors);
            }
            Some(t) => t,
        };
        let allowed = allowed_fields(type_name);
        for field in present_fields(input) {
            if !allowed.contains(&field) {
                c.fail(field, format!("is not a field of a {type_name} event"));
            }
        }
        let kind = validate_kind(&mut c, type_name, input);
        match (c.errors.is_empty(), key, kind) {
            (true, Some(key), Some(kind)) => Ok(Event {
                key,
                occurred_at,
                source,
                kind,
            }),
            _ => Err(c.errors),
        }
    }
}

fn validate_kind(c: &mut Check, type_name: &str, input: &EventInput) -> Option<EventKind> {
    let sku = || input.sku.clone();
    match type_name {
        "receipt" => {
            let sku = c.id("sku", &sku(), Sku::parse);
            let location = c.id("location", &input.location, LocationId::parse);
            let qty = c.qty("qty", input.qty, 1);
            let reason = c.text("reason", &input.reason);
            Some(EventKind::Receipt {
                sku: sku?,
                location: location?,
                qty: qty?,
                reason,
            })
        }
        "adjust" => {
            let sku = c.id("sku", &sku(), Sku::parse);
            let location = c.id("location", &input.location, LocationId::parse);
            let delta = match input.delta {
                None => {
                    c.fail("delta", "is required");
                    None
                }
                Some(0) => {
                    c.fail("delta", "must not be 0");
                    None
                }
                // `unsigned_abs`: `i64::MIN.abs()` has no i64 value.
                Some(d) if d.unsigned_abs() > QTY_MAX.unsigned_abs() => {
                    c.fail("delta", format!("must be between -{QTY_MAX} and {QTY_MAX}"));
                    None
                }
                Some(d) => Some(d),
            };
            let reason = match c.text("reason", &input.reason) {
                Some(r) if !r.trim().is_empty() => Some(r),
                _ => {
                    c.fail("reason", "is required for an adjust");
                    None
                }
            };
            Some(EventKind::Adjust {
                sku: sku?,
                location: location?,
                delta: delta?,
                reason: reason?,
            })
        }
        "count" => {
            let sku = c.id("sku", &sku(), Sku::parse);
            let location = c.id("location", &input.location, LocationId::parse);
            let on_hand = c.qty("on_hand", input.on_hand, 0);
            let reason = c.text("reason", &input.reason);
            Some(EventKind::Count {
                sku: sku?,
                location: location?,
                on_hand: on_hand?,
                reason,
            })
        }
        "order" => {
            let order = order_ref(c, input);
            let lines = order_lines(c, input);
            Some(EventKind::Order {
                order: order?,
                lines: lines?,
            })
        }
        "cancel" | "ship" => {
            let order = order_ref(c, input);
            let lines = line_qtys(c, input);
            let reason = c.text("reason", &input.reason);
            let (order, lines) = (order?, lines?);
            Some(if type_name == "cancel" {
                EventKind::Cancel {
                    order,
                    lines,
                    reason,
                }
            } else {
                EventKind::Ship { order, lines }
            })
        }
        "return_received" => {
            let rma_id = c.id("rma_id", &input.rma_id, RmaId::parse);
            let sku = c.id("sku", &sku(), Sku::parse);
            let location = c.id("location", &input.location, LocationId::parse);
            let qty = c.qty("qty", input.qty, 1);
            Some(EventKind::ReturnReceived {
                rma_id: rma_id?,
                sku: sku?,
                location: location?,
                qty: qty?,
            })
        }
        "return_verified" => {
            let rma_id = c.id("rma_id", &input.rma_id, RmaId::parse);
            let errors_before = c.errors.len();
            let sku = c.id_opt("sku", &sku(), Sku::parse);
            let location = c.id_opt("location", &input.location, LocationId::parse);
            // SKU and location are optional, but when given they must be valid.
            let ids_ok = c.errors.len() == errors_before;
            let sellable_qty = c.qty("sellable_qty", Some(input.sellable_qty.unwrap_or(0)), 0);
            let unsellable_qty =
                c.qty("unsellable_qty", Some(input.unsellable_qty.unwrap_or(0)), 0);
            if input.sellable_qty.is_none() && input.unsellable_qty.is_none() {
                c.fail("sellable_qty", "sellable_qty or unsellable_qty is required");
            } else if sellable_qty == Some(0) && unsellable_qty == Some(0) {
                c.fail(
                    "sellable_qty",
                    "sellable_qty + unsellable_qty must be at least 1",
                );
            }
            if !ids_ok {
                return None;
            }
            Some(EventKind::ReturnVerified {
                rma_id: rma_id?,
                sku,
                location,
                sellable_qty: sellable_qty?,
                unsellable_qty: unsellable_qty?,
            })
        }
        "inbound" => {
            let po_id = c.id("po_id", &input.po_id, PoId::parse);
            let sku = c.id("sku", &sku(), Sku::parse);
            let location = c.id("location", &input.location, LocationId::parse);
            let qty = c.qty("qty", input.qty, 0);
            let eta = input.eta.as_ref().and_then(|raw| {
                match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => {
                        c.fail("eta", "must be a date (YYYY-MM-DD)");
                        None
                    }
                }
            });
            let confirmed = input.confirmed.unwrap_or(false);
            if confirmed && input.eta.is_none() {
                c.fail("eta", "is required when confirmed is true");
            }
            Some(EventKind::Inbound {
                po_id: po_id?,
                sku: sku?,
                location: location?,
                qty: qty?,
                eta,
                confirmed,
            })
        }
        "inbound_received" => {
            let po_id = c.id("po_id", &input.po_id, PoId::parse);
            let sku = c.id("sku", &sku(), Sku::parse);
            let location = c.id("location", &input.location, LocationId::parse);
            let qty = c.qty("qty", input.qty, 1);
            Some(EventKind::InboundReceived {
                po_id: po_id?,
                sku: sku?,
                location: location?,
                qty: qty?,
            })
        }
        _ => None,
    }
}

fn order_ref(c: &mut Check, input: &EventInput) -> Option<OrderRef> {
    let channel = c.id_opt("channel", &input.channel, ChannelId::parse);
    let order_id = c.id("order_id", &input.order_id, OrderId::parse)?;
    if input.channel.is_some() && channel.is_none() {
        return None;
    }
    Some(OrderRef { channel, order_id })
}

fn lines_slice<'a>(
    c: &mut Check,
    input: &'a EventInput,
    required: bool,
) -> Option<&'a [LineInput]> {
    match &input.lines {
        None if required => {
            c.fail("lines", "is required");
            None
        }
        None => None,
        Some(lines) if lines.is_empty() => {
            c.fail("lines", "must not be empty");
            None
        }
        Some(lines) if lines.len() > LINES_MAX => {
            c.fail("lines", format!("must have at most {LINES_MAX} lines"));
            None
        }
        Some(lines) => Some(lines),
    }
}

fn order_lines(c: &mut Check, input: &EventInput) -> Option<Vec<OrderLine>> {
    let raw = lines_slice(c, input, true)?;
    let mut lines = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, line) in raw.iter().enumerate() {
        let at = |f: &str| format!("lines[{i}].{f}");
        let line_id = c.id(&at("line_id"), &line.line_id, LineId::parse);
        let sku = c.id(&at("sku"), &line.sku, Sku::parse);
        let qty = c.qty(&at("qty"), line.qty, 1);
        let location = c.id_opt(&at("location"), &line.location, LocationId::parse);
        match (line_id, sku, qty) {
            (Some(line_id), Some(sku), Some(qty)) => {
                if lines.iter().any(|l: &OrderLine| l.line_id == line_id) {
                    c.fail(at("line_id"), "appears twice in this order");
                    ok = false;
                }
                lines.push(OrderLine {
                    line_id,
                    sku,
                    qty,
                    location,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(lines)
}

fn line_qtys(c: &mut Check, input: &EventInput) -> Option<Option<Vec<LineQty>>> {
    let Some(raw) = lines_slice(c, input, false) else {
        // Absent lines mean the whole order; present-but-invalid already failed.
        return input.lines.is_none().then_some(None);
    };
    let mut lines = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, line) in raw.iter().enumerate() {
        let at = |f: &str| format!("lines[{i}].{f}");
        let line_id = c.id(&at("line_id"), &line.line_id, LineId::parse);
        let qty = match line.qty {
            None => None,
            Some(q) => {
                let q = c.qty(&at("qty"), Some(q), 1);
                ok &= q.is_some();
                q
            }
        };
        let sku = c.id_opt(&at("sku"), &line.sku, Sku::parse);
        let location = c.id_opt(&at("location"), &line.location, LocationId::parse);
        match line_id {
            Some(line_id) => {
                if lines.iter().any(|l: &LineQty| l.line_id == line_id) {
                    c.fail(at("line_id"), "appears twice in this event");
                    ok = false;
                }
                lines.push(LineQty {
                    line_id,
                    qty,
                    sku,
                    location,
                })
            }
            None => ok = false,
        }
    }
    ok.then_some(Some(lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: &str) -> EventInput {
        EventInput {
            key: Some("k1".into()),
            kind: Some(kind.into()),
            ..EventInput::default()
        }
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn receipt_needs_its_fields() {
        let errors = Event::validate(&input("receipt")).unwrap_err();
        assert_eq!(fields(errors), ["sku", "location", "qty"]);
    }

    #[test]
    fn fields_of_another_type_are_rejected() {
        let mut e = input("receipt");
        e.sku = Some("A".into());
        e.location = Some("L".into());
        e.qty = Some(2);
        e.delta = Some(3);
        let errors = Event::validate(&e).unwrap_err();
        assert_eq!(errors[0].field, "delta");
        assert!(errors[0].message.contains("not a field of a receipt"));
    }

    #[test]
    fn unknown_type_and_missing_key() {
        let mut e = input("teleport");
        e.key = None;
        assert_eq!(fields(Event::validate(&e).unwrap_err()), ["key", "type"]);
    }

    #[test]
    fn order_lines_are_checked_by_index() {
        let mut e = input("order");
        e.order_id = Some("1001".into());
        e.lines = Some(vec![
            LineInput {
                line_id: Some("1".into()),
                sku: Some("A".into()),
                qty: Some(1),
                location: None,
            },
            LineInput {
                line_id: Some("1".into()),
                sku: None,
                qty: Some(0),
                location: None,
            },
        ]);
        let errors = Event::validate(&e).unwrap_err();
        assert_eq!(fields(errors), ["lines[1].sku", "lines[1].qty"]);
    }

    #[test]
    fn valid_order_and_whole_order_cancel() {
        let mut e = input("order");
        e.channel = Some("shop".into());
        e.order_id = Some("1001".into());
        e.lines = Some(vec![LineInput {
            line_id: Some("1".into()),
            sku: Some("A".into()),
            qty: Some(2),
            location: None,
        }]);
        let event = Event::validate(&e).unwrap();
        assert_eq!(event.kind.type_name(), "order");
        let mut c = input("cancel");
        c.order_id = Some("1001".into());
        let cancel = Event::validate(&c).unwrap();
        assert!(matches!(cancel.kind, EventKind::Cancel { lines: None, .. }));
    }

    #[test]
    fn adjust_needs_reason_and_nonzero_delta() {
        let mut e = input("adjust");
        e.sku = Some("A".into());
        e.location = Some("L".into());
        e.delta = Some(0);
        assert_eq!(
            fields(Event::validate(&e).unwrap_err()),
            ["delta", "reason"]
        );
    }

    #[test]
    fn inbound_dates() {
        let mut e = input("inbound");
        e.po_id = Some("PO1".into());
        e.sku = Some("A".into());
        e.location = Some("L".into());
        e.qty = Some(10);
        e.eta = Some("2026-13-01".into());
        e.confirmed = Some(true);
        assert_eq!(fields(Event::validate(&e).unwrap_err()), ["eta"]);
        e.eta = Some("2026-12-01".into());
        assert!(Event::validate(&e).is_ok());
    }

    #[test]
    fn canonical_form_round_trips() {
        let mut e = input("receipt");
        e.sku = Some("A".into());
        e.location = Some("L".into());
        e.qty = Some(2);
        e.occurred_at = Some("2026-11-27T10:00:00+01:00".into());
        let event = Event::validate(&e).unwrap();
        assert_eq!(
            event.occurred_at.unwrap().to_rfc3339(),
            "2026-11-27T09:00:00+00:00"
        );
    }

    #[test]
    fn serialized_events_are_in_wire_form_and_resendable() {
        let mut e = input("cancel");
        e.channel = Some("shop".into());
        e.order_id = Some("1001".into());
        e.lines = Some(vec![LineInput {
            line_id: Some("1".into()),
            sku: None,
            qty: Some(2),
            location: None,
        }]);
        let event = Event::validate(&e).unwrap();
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"key":"k1","type":"cancel","channel":"shop","order_id":"1001","lines":[{"line_id":"1","qty":2}]}"#
        );
        // What the ledger shows can be sent again as it is.
        let resent: EventInput = serde_json::from_str(&json).unwrap();
        assert_eq!(Event::validate(&resent).unwrap(), event);
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }
}
