//! Orders read back by update time, the backstop for lost webhooks (Shopify
//! retries a delivery for hours, then gives up, and asks apps to reconcile,
//! <https://shopify.dev/docs/apps/build/webhooks/best-practices>): the
//! `orders` query with `updated_at:>…`, sorted by `UPDATED_AT`
//! (<https://shopify.dev/docs/api/admin-graphql/latest/queries/orders>).
//!
//! Each order gives the changes its webhooks would have given, under the
//! same dedup keys: `orders/create:{id}` with its lines, each restocking
//! refund as `refunds/create:{refund id}`, and `orders/cancelled:{id}`. An
//! order with more lines than the list reads, or with refunds, is read
//! again whole by its id (`ORDER_DOCUMENT`); beyond `ORDER_LINES` lines or
//! `ORDER_REFUNDS` refunds of `REFUND_LINES` lines each, the rest of an order
//! is not read back (webhooks still carry it).

use super::*;
use crate::poll::{parse_utc, PollWindow};

/// Orders per page and pages per poll (`poll.rs`).
const ORDERS_PER_PAGE: usize = 25;
const PAGES_PER_POLL: u32 = 10;
/// Lines the list reads per order; more are read with the order itself.
const LIST_LINES: usize = 5;
const ORDER_LINES: usize = 100;
const ORDER_REFUNDS: usize = 5;
const REFUND_LINES: usize = 40;

const LINE_FIELDS: &str = "id quantity sku variant { id }";

pub(super) fn orders_document() -> String {
    format!(
        "query StockdOrdersSince($first: Int!, $after: String, $query: String!) {{ \
         orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{ \
         pageInfo {{ hasNextPage endCursor }} \
         nodes {{ id legacyResourceId updatedAt cancelledAt \
         lineItems(first: {LIST_LINES}) {{ pageInfo {{ hasNextPage }} nodes {{ {LINE_FIELDS} }} }} \
         refunds(first: 1) {{ legacyResourceId }} }} }} }}"
    )
}

pub(super) fn order_document() -> String {
    format!(
        "query StockdOrder($id: ID!) {{ order(id: $id) {{ id legacyResourceId updatedAt cancelledAt \
         lineItems(first: {ORDER_LINES}) {{ nodes {{ {LINE_FIELDS} }} }} \
         refunds(first: {ORDER_REFUNDS}) {{ legacyResourceId \
         refundLineItems(first: {REFUND_LINES}) {{ nodes {{ quantity restockType lineItem {{ id }} }} }} }} }} }}"
    )
}

/// Requested-cost estimates (objects 1, connections 2 + `first` × node).
fn orders_cost() -> f64 {
    let line = 2.0;
    let order = 1.0 + (2.0 + LIST_LINES as f64 * line) + 1.0;
    2.0 + ORDERS_PER_PAGE as f64 * order
}

fn order_cost() -> f64 {
    let lines = 2.0 + ORDER_LINES as f64 * 2.0;
    let refund = 1.0 + 2.0 + REFUND_LINES as f64 * 2.0;
    1.0 + lines + ORDER_REFUNDS as f64 * refund
}

/// The numeric id at the end of a global id (`gid://shopify/LineItem/7` →
/// `7`), the form REST webhooks carry.
fn legacy_id(gid: &str) -> Option<String> {
    let tail = gid.rsplit('/').next()?;
    let tail = tail.split('?').next()?;
    (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit())).then(|| tail.to_string())
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn nodes(value: Option<&Value>) -> &[Value] {
    value
        .and_then(|c| c.get("nodes"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A GraphQL line item as the REST webhook's line: its id, the ids a listing
/// matches by, its ordered quantity.
fn order_line(line: &Value) -> Option<OrderLineRef> {
    let line_id = str_at(line, "id").and_then(legacy_id)?;
    let qty = line.get("quantity").and_then(Value::as_i64)?;
    let mut keys = Vec::new();
    if let Some(variant) = line.get("variant").and_then(|v| str_at(v, "id")) {
        keys.push(("variant_id".to_string(), variant.to_string()));
    }
    if let Some(sku) = str_at(line, "sku").map(str::trim).filter(|s| !s.is_empty()) {
        keys.push(("sku".to_string(), sku.to_string()));
    }
    Some(OrderLineRef { line_id, keys, qty })
}

/// Whether a refund line's `restockType` puts units back (the GraphQL names
/// of the REST values `webhooks::restocks` accepts).
fn restocks(restock_type: Option<&str>) -> bool {
    matches!(restock_type, Some("RETURN" | "CANCEL" | "LEGACY_RESTOCK"))
}

/// The changes an order read through GraphQL asks for, in the order they
/// apply; `None` when it lacks what identifies it.
pub(super) fn order_changes(order: &Value) -> Option<Vec<OrderChange>> {
    let order_id = str_at(order, "legacyResourceId")
        .map(str::to_string)
        .or_else(|| str_at(order, "id").and_then(legacy_id))?;
    let lines: Vec<OrderLineRef> = nodes(order.get("lineItems"))
        .iter()
        .filter_map(order_line)
        .collect();
    let mut changes = vec![OrderChange {
        dedup_key: format!("orders/create:{order_id}"),
        order_id: order_id.clone(),
        kind: OrderChangeKind::Placed,
        lines: lines.clone(),
    }];
    let refunds = order
        .get("refunds")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for refund in refunds {
        let Some(refund_id) = str_at(refund, "legacyResourceId") else {
            continue;
        };
        let restocked: Vec<OrderLineRef> = nodes(refund.get("refundLineItems"))
            .iter()
            .filter(|l| restocks(str_at(l, "restockType")))
            .filter_map(|l| {
                let line_id = l
                    .get("lineItem")
                    .and_then(|li| str_at(li, "id"))
                    .and_then(legacy_id)?;
                let qty = l
                    .get("quantity")
                    .and_then(Value::as_i64)
                    .filter(|q| *q > 0)?;
                let keys = lines
                    .iter()
                    .find(|o| o.line_id == line_id)
                    .map(|o| o.keys.clone())
                    .unwrap_or_default();
                Some(OrderLineRef { line_id, keys, qty })
            })
            .collect();
        if !restocked.is_empty() {
            changes.push(OrderChange {
                dedup_key: format!("refunds/create:{refund_id}"),
                order_id: order_id.clone(),
                kind: OrderChangeKind::Restocked,
                lines: restocked,
            });
        }
    }
    if order.get("cancelledAt").is_some_and(|c| !c.is_null()) {
        changes.push(OrderChange {
            dedup_key: format!("orders/cancelled:{order_id}"),
            order_id,
            kind: OrderChangeKind::Cancelled,
            lines: Vec::new(),
        });
    }
    Some(changes)
}

impl Shopify {
    /// One poll: the orders updated since the cursor, oldest first.
    pub(super) async fn poll(
        &self,
        cursor: Option<&str>,
        interval: Duration,
    ) -> Result<OrderPoll, ChannelError> {
        let window = PollWindow::parse(cursor);
        let since = window.since(self.now(), self.config.order_lookback);
        let search = format!(
            "updated_at:>'{}'",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let mut newest = window.seen();
        let mut changes = Vec::new();
        let mut after: Option<String> = None;
        let mut page: u32 = 1;
        let capped = loop {
            let answer = self
                .graphql(
                    &orders_document(),
                    json!({"first": ORDERS_PER_PAGE, "after": after, "query": search}),
                    orders_cost(),
                    None,
                )
                .await?;
            let orders = answer.data.get("orders").cloned().unwrap_or(Value::Null);
            for order in nodes(Some(&orders)) {
                newest = newest.max(str_at(order, "updatedAt").and_then(parse_utc));
                let more_lines = order
                    .get("lineItems")
                    .and_then(|c| c.get("pageInfo"))
                    .and_then(|p| p.get("hasNextPage"))
                    .and_then(Value::as_bool)
                    == Some(true);
                let refunded = order
                    .get("refunds")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty());
                let whole = match (more_lines || refunded, str_at(order, "id")) {
                    (true, Some(id)) => self.read_order(id).await?,
                    _ => Some(order.clone()),
                };
                match whole.as_ref().and_then(order_changes) {
                    Some(found) => changes.extend(found),
                    None => tracing::warn!(order = ?str_at(order, "id"),
                        "a polled order cannot be read; skipped"),
                }
            }
            let info = orders.get("pageInfo");
            let next = info
                .and_then(|p| p.get("hasNextPage"))
                .and_then(Value::as_bool)
                == Some(true);
            after = info
                .and_then(|p| str_at(p, "endCursor"))
                .map(str::to_string);
            if !next || after.is_none() {
                break false;
            }
            if page >= PAGES_PER_POLL {
                break true;
            }
            page += 1;
        };
        Ok(PollWindow::answer(
            changes, newest, capped, cursor, interval,
        ))
    }

    /// One order with its lines and refunds (`None` when it is gone).
    async fn read_order(&self, id: &str) -> Result<Option<Value>, ChannelError> {
        let answer = self
            .graphql(&order_document(), json!({"id": id}), order_cost(), None)
            .await?;
        Ok(answer.data.get("order").filter(|o| o.is_object()).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_read_back_gives_its_webhooks_changes() {
        let order = json!({
            "id": "gid://shopify/Order/9007199254741001",
            "legacyResourceId": "9007199254741001",
            "cancelledAt": "2026-12-06T04:00:00Z",
            "lineItems": {"nodes": [
                {"id": "gid://shopify/LineItem/14000000001", "quantity": 2, "sku": "A",
                 "variant": {"id": "gid://shopify/ProductVariant/44"}}
            ]},
            "refunds": [
                {"legacyResourceId": "900000001", "refundLineItems": {"nodes": [
                    {"quantity": 2, "restockType": "RETURN",
                     "lineItem": {"id": "gid://shopify/LineItem/14000000001"}}
                ]}},
                {"legacyResourceId": "900000002", "refundLineItems": {"nodes": [
                    {"quantity": 1, "restockType": "NO_RESTOCK",
                     "lineItem": {"id": "gid://shopify/LineItem/14000000001"}}
                ]}}
            ]
        });
        let changes = order_changes(&order).expect("readable");
        let keys: Vec<&str> = changes.iter().map(|c| c.dedup_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "orders/create:9007199254741001",
                "refunds/create:900000001",
                "orders/cancelled:9007199254741001"
            ]
        );
        let placed = &changes[0].lines[0];
        assert_eq!(placed.line_id, "14000000001");
        assert_eq!(placed.qty, 2);
        assert_eq!(
            placed.keys,
            [
                (
                    "variant_id".to_string(),
                    "gid://shopify/ProductVariant/44".to_string()
                ),
                ("sku".to_string(), "A".to_string())
            ]
        );
        assert_eq!(changes[1].kind, OrderChangeKind::Restocked);
        assert_eq!(changes[1].lines[0].keys, placed.keys);
        assert!(order_changes(&json!({"lineItems": {"nodes": []}})).is_none());
    }

    #[test]
    fn the_poll_documents_fit_the_query_cost_limit() {
        assert!(orders_cost() <= 1000.0, "{}", orders_cost());
        assert!(order_cost() <= 1000.0, "{}", order_cost());
    }
}
