//! OpenAPI schemas of the core and store types the API sends or receives as
//! they are (the core does not know about OpenAPI). These structs are never
//! built: they only describe. The tests below compare each one's properties
//! with what the real type serializes to, so the two cannot drift apart.

#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, Utc};
use utoipa::ToSchema;

/// An event as sent by a client. Which fields are required depends on `type`:
/// receipt (sku, location, qty, reason?), adjust (sku, location, delta, reason),
/// count (sku, location, on_hand, reason?), order (channel?, order_id, lines),
/// cancel (channel?, order_id, lines?, reason?), ship (channel?, order_id, lines?),
/// return_received (rma_id, sku, location, qty), return_verified (rma_id, sku?,
/// location?, sellable_qty?, unsellable_qty?), inbound (po_id, sku, location, qty,
/// eta?, confirmed?), inbound_received (po_id, sku, location, qty).
#[derive(ToSchema)]
pub struct EventInput {
    /// Idempotency key, 1–255 characters.
    pub key: String,
    /// receipt, adjust, count, order, cancel, ship, return_received,
    /// return_verified, inbound or inbound_received.
    #[serde(rename = "type")]
    pub kind: String,
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
    /// Expected arrival date (YYYY-MM-DD).
    pub eta: Option<NaiveDate>,
    pub confirmed: Option<bool>,
    /// RFC 3339 date-time.
    pub occurred_at: Option<DateTime<Utc>>,
    pub source: Option<String>,
}

/// One order line of an order, cancel or ship event.
#[derive(ToSchema)]
pub struct LineInput {
    pub line_id: String,
    pub sku: Option<String>,
    pub qty: Option<i64>,
    pub location: Option<String>,
}

/// The body of `POST /v1/events`: one event or an array of up to 10,000.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum EventsBody {
    One(Box<EventInput>),
    Many(Vec<EventInput>),
}

/// What became of one event.
#[derive(ToSchema)]
pub struct EventResult {
    pub key: String,
    /// applied, duplicate or quarantined.
    pub status: String,
    /// Ledger sequence number; null when quarantined.
    pub seq: Option<u64>,
    /// Why the event is quarantined.
    pub reason: Option<String>,
}

#[derive(ToSchema)]
pub struct Location {
    pub id: String,
    pub name: String,
    pub sellable: bool,
    pub priority: i32,
}

#[derive(ToSchema)]
pub struct Variant {
    pub sku: String,
    pub title: Option<String>,
    pub product_id: Option<String>,
    pub gtin: Option<String>,
}

#[derive(ToSchema)]
pub struct UpsertSummary {
    pub upserted: usize,
    /// Quarantined events replayed and applied because of the upsert.
    pub replayed: usize,
}

/// The stock of one variant; totals are over sellable locations.
#[derive(ToSchema)]
pub struct StockView {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// on_hand − reserved, floored at 0.
    pub available: i64,
    pub pending_return: i64,
    /// The shortfall when reservations exceed on_hand.
    pub oversold: i64,
    pub inbound: Vec<InboundView>,
    pub locations: Vec<LocationStock>,
}

/// `GET /v1/stock/{sku}`: the stock view and what each channel may show.
#[derive(ToSchema)]
pub struct StockDetail {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// on_hand − reserved, floored at 0.
    pub available: i64,
    pub pending_return: i64,
    /// The shortfall when reservations exceed on_hand.
    pub oversold: i64,
    pub inbound: Vec<InboundView>,
    pub locations: Vec<LocationStock>,
    /// One entry per enabled channel listing the variant.
    pub channels: Vec<crate::api::channels::ChannelAvailability>,
}

#[derive(ToSchema)]
pub struct InboundView {
    pub po_id: String,
    pub location: String,
    pub qty: i64,
    pub eta: Option<NaiveDate>,
    pub confirmed: bool,
}

#[derive(ToSchema)]
pub struct LocationStock {
    pub location: String,
    pub sellable: bool,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub pending_return: i64,
}

/// One applied event in the audit trail.
#[derive(ToSchema)]
pub struct LedgerRow {
    pub seq: u64,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub source: Option<String>,
    /// The event as applied (canonical form).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// Net quantity changes per sku × location (on_hand, reserved, pending_return, written_off, inbound).
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<serde_json::Value>,
    /// Oversells and other remarks.
    #[schema(value_type = Vec<Object>)]
    pub notes: Vec<serde_json::Value>,
}

/// One RMA: `open` while some received unit is not verified.
#[derive(ToSchema)]
pub struct ReturnView {
    pub rma_id: String,
    /// open or closed.
    pub status: String,
    pub received_qty: i64,
    pub sellable_qty: i64,
    pub unsellable_qty: i64,
    pub pending_qty: i64,
    /// In the order first received.
    pub lines: Vec<ReturnLineView>,
}

/// Units of one SKU received at one location under an RMA.
#[derive(ToSchema)]
pub struct ReturnLineView {
    pub sku: String,
    pub location: String,
    pub received_qty: i64,
    pub sellable_qty: i64,
    pub unsellable_qty: i64,
    pub pending_qty: i64,
}

/// A quarantined event.
#[derive(ToSchema)]
pub struct QuarantineRow {
    pub id: i64,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// waiting, or rejected when its replay was refused.
    pub status: String,
    pub reason: String,
    pub received_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// A kept channel order change (or its lines) that maps to no listing.
#[derive(ToSchema)]
pub struct UnmappedRow {
    pub id: i64,
    pub channel: String,
    /// The change's deduplication key on the channel (`…:unmapped` when only
    /// some of its lines were kept).
    pub dedup_key: String,
    pub order_id: String,
    /// placed, cancelled, restocked or refunded.
    pub kind: String,
    /// The channel's ids of each kept line's item, as `[key, value]` pairs.
    pub item_keys: Vec<Vec<Vec<String>>>,
    pub received_at: DateTime<Utc>,
    /// The normalised change, replayed as is.
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use crate::api::ApiDoc;
    use serde::Serialize;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;
    use stockd_core as core;
    use utoipa::OpenApi;

    fn schema_properties(name: &str) -> BTreeSet<String> {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schema = &doc["components"]["schemas"][name];
        schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name} has no properties: {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    fn check(name: &str, sample: impl Serialize) {
        let value = serde_json::to_value(sample).unwrap();
        let keys: BTreeSet<String> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            schema_properties(name),
            keys,
            "schema {name} drifted from its type"
        );
    }

    #[test]
    fn schemas_match_the_types_they_describe() {
        check("EventInput", core::EventInput::default());
        check("LineInput", core::event::LineInput::default());
        let sku = || core::Sku::parse("S").unwrap();
        let loc = || core::LocationId::parse("L").unwrap();
        check(
            "EventResult",
            core::EventResult {
                key: core::IdempotencyKey::parse("k").unwrap(),
                status: core::EventStatus::Quarantined,
                seq: None,
                reason: Some("unknown sku S".into()),
            },
        );
        check(
            "Location",
            core::Location {
                id: loc(),
                name: "n".into(),
                sellable: true,
                priority: 0,
            },
        );
        check(
            "Variant",
            core::Variant {
                sku: sku(),
                title: None,
                product_id: None,
                gtin: None,
            },
        );
        check("UpsertSummary", stockd_store::UpsertSummary::default());
        let line = core::InboundLine {
            po_id: core::PoId::parse("PO").unwrap(),
            sku: sku(),
            location: loc(),
            qty: 1,
            eta: None,
            confirmed: false,
        };
        let location = core::Location {
            id: loc(),
            name: "n".into(),
            sellable: true,
            priority: 0,
        };
        let view =
            core::stock::stock_view(sku(), &[(location, core::Quantities::default())], &[line]);
        check("InboundView", &view.inbound[0]);
        check("LocationStock", &view.locations[0]);
        check("StockView", &view);
        check(
            "StockDetail",
            crate::api::stock::StockDetail {
                view: view.clone(),
                channels: vec![],
            },
        );
        check(
            "LedgerRow",
            stockd_store::LedgerRow {
                seq: 1,
                key: "k".into(),
                kind: "receipt".into(),
                occurred_at: None,
                received_at: chrono::Utc::now(),
                source: None,
                event: json!({}),
                changes: vec![],
                notes: vec![],
            },
        );
        check(
            "UnmappedRow",
            stockd_store::unmapped::UnmappedRow {
                id: 1,
                change: stockd_store::unmapped::UnmappedChange {
                    channel: core::ChannelId::parse("shop").unwrap(),
                    dedup_key: "order:1".into(),
                    order_id: "1".into(),
                    kind: "placed".into(),
                    item_keys: json!([[["variant_id", "7"]]]),
                    change: json!({}),
                    received_at: chrono::Utc::now(),
                },
            },
        );
        check(
            "QuarantineRow",
            stockd_store::QuarantineRow {
                id: 1,
                key: "k".into(),
                kind: "receipt".into(),
                status: "waiting".into(),
                reason: "unknown sku S".into(),
                received_at: chrono::Utc::now(),
                event: Value::Null,
            },
        );
        let view = core::returns::return_view(
            core::RmaId::parse("R").unwrap(),
            &[core::returns::ReturnLine {
                sku: sku(),
                location: loc(),
                received_qty: 2,
                sellable_qty: 1,
                unsellable_qty: 0,
            }],
        );
        check("ReturnLineView", &view.lines[0]);
        check("ReturnView", &view);
    }
}
