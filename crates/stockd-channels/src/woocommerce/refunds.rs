//! WooCommerce refunds: an `order.updated` names its refunds by id only
//! (the order's `refunds` array); each refund's lines come from
//! `GET /wp-json/wc/v3/orders/{id}/refunds`
//! (<https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-refunds>).
//!
//! - A refund line's `quantity` is negative and its `meta_data` carries
//!   `_refunded_item_id`, the order line it refunds (the docs' example).
//! - Whether units were restocked is not a field of the refund: WooCommerce
//!   (`wc_restock_refunded_items`) adds the restocked units to the order
//!   line's meta `_restock_refunded_items`, a running total per line, which
//!   the order payload of the notification carries. Restocks happen when a
//!   refund is created, so the total is spread over the refunds newest
//!   first: the same refund always gets the same share, whatever delivery
//!   it is read from.
//!
//! Each refund becomes up to two changes: the restocked units
//! (`Restocked`, dedup `{order}:refund:{id}:restock`) and the rest
//! (`Refunded`, dedup `{order}:refund:{id}`).

use super::{
    error_from_response, has_next_page, id_string, id_value, invalid_response, quantity_value,
    status_change, WooCommerce, MAX_PAGES, READ_CHUNK,
};
use crate::{ChannelError, ErrorClass, FollowUp, OrderChange, OrderChangeKind, OrderLineRef};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Whether an order payload names any refund.
pub(super) fn has_refunds(order: &Map<String, Value>) -> bool {
    order
        .get("refunds")
        .and_then(Value::as_array)
        .is_some_and(|refunds| !refunds.is_empty())
}

/// One line of a refund, in positive units.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RefundLine {
    /// The order line refunded (`_refunded_item_id`).
    pub line_id: String,
    pub keys: Vec<(String, String)>,
    pub qty: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refund {
    pub id: u64,
    pub lines: Vec<RefundLine>,
}

fn meta_value<'a>(meta: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    meta?
        .as_array()?
        .iter()
        .find(|m| m.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|m| m.get("value"))
}

/// Reads one refund of the refunds endpoint.
pub(super) fn parse_refund(value: &Value) -> Result<Refund, String> {
    let id = id_value(value.get("id")).ok_or("refund without id")?;
    let mut lines = Vec::new();
    let items = match value.get("line_items") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => return Err(format!("refund {id}: line_items is not an array")),
    };
    for item in items {
        let qty = quantity_value(item.get("quantity"))
            .ok_or_else(|| format!("refund {id}: a line without quantity"))?
            .checked_abs()
            .ok_or_else(|| format!("refund {id}: quantity out of range"))?;
        let line_id = id_string(meta_value(item.get("meta_data"), "_refunded_item_id"))
            .ok_or_else(|| format!("refund {id}: a line without _refunded_item_id"))?;
        let mut keys = Vec::new();
        if let Some(v) = id_value(item.get("variation_id")).filter(|&v| v != 0) {
            keys.push(("variation_id".to_owned(), v.to_string()));
        }
        if let Some(p) = id_value(item.get("product_id")).filter(|&p| p != 0) {
            keys.push(("product_id".to_owned(), p.to_string()));
        }
        if let Some(sku) = item.get("sku").and_then(Value::as_str) {
            if !sku.is_empty() {
                keys.push(("sku".to_owned(), sku.to_owned()));
            }
        }
        if qty == 0 {
            continue;
        }
        lines.push(RefundLine { line_id, keys, qty });
    }
    Ok(Refund { id, lines })
}

/// Units restocked so far per order line (`_restock_refunded_items`).
pub(super) fn restocked_by_line(order: &Map<String, Value>) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for item in order
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(line_id) = id_string(item.get("id")) else {
            continue;
        };
        let restocked =
            quantity_value(meta_value(item.get("meta_data"), "_restock_refunded_items"))
                .unwrap_or(0)
                .max(0);
        if restocked > 0 {
            out.insert(line_id, restocked);
        }
    }
    out
}

/// The order changes of `refunds` (any order), with `restocked` units per
/// order line spread newest refund first.
pub(super) fn refund_changes(
    order_id: &str,
    refunds: &[Refund],
    restocked: &HashMap<String, i64>,
) -> Vec<OrderChange> {
    let mut sorted: Vec<&Refund> = refunds.iter().collect();
    sorted.sort_by_key(|r| r.id);
    let mut left = restocked.clone();
    // (refund index, line index) → restocked units.
    let mut share: HashMap<(usize, usize), i64> = HashMap::new();
    for (r, refund) in sorted.iter().enumerate().rev() {
        for (l, line) in refund.lines.iter().enumerate() {
            if let Some(left) = left.get_mut(&line.line_id) {
                let take = line.qty.min(*left);
                *left -= take;
                share.insert((r, l), take);
            }
        }
    }
    let mut changes = Vec::new();
    for (r, refund) in sorted.iter().enumerate() {
        let mut restock = Vec::new();
        let mut plain = Vec::new();
        for (l, line) in refund.lines.iter().enumerate() {
            let back = share.get(&(r, l)).copied().unwrap_or(0);
            let line_ref = |qty| OrderLineRef {
                line_id: line.line_id.clone(),
                keys: line.keys.clone(),
                qty,
            };
            if back > 0 {
                restock.push(line_ref(back));
            }
            if line.qty > back {
                plain.push(line_ref(line.qty - back));
            }
        }
        if !restock.is_empty() {
            changes.push(OrderChange {
                dedup_key: format!("{order_id}:refund:{}:restock", refund.id),
                order_id: order_id.to_owned(),
                kind: OrderChangeKind::Restocked,
                lines: restock,
            });
        }
        if !plain.is_empty() {
            changes.push(OrderChange {
                dedup_key: format!("{order_id}:refund:{}", refund.id),
                order_id: order_id.to_owned(),
                kind: OrderChangeKind::Refunded,
                lines: plain,
            });
        }
    }
    changes
}

/// Every change of an `order.updated` that names refunds: the status change
/// first when it places the order; the refunds' lines; then a cancel of the
/// status. A `refunded` status whose refunds name lines is those lines (a
/// whole-order cancel would also release lines the refunds left out).
pub(super) fn changes_of(
    order: &Map<String, Value>,
    refunds: &[Refund],
) -> Result<Vec<OrderChange>, String> {
    let status = status_change(order).map_err(|e| e.to_string())?;
    let order_id = id_string(order.get("id")).ok_or("order without id")?;
    let refunded = refund_changes(&order_id, refunds, &restocked_by_line(order));
    let mut changes = Vec::new();
    match status {
        Some(change) if change.kind == OrderChangeKind::Placed => {
            changes.push(change);
            changes.extend(refunded);
        }
        Some(change) => {
            let by_lines = refunds.iter().any(|r| !r.lines.is_empty());
            let refunded_status = change.dedup_key.ends_with(":refunded");
            changes.extend(refunded);
            if !(refunded_status && by_lines) {
                changes.push(change);
            }
        }
        None => changes.extend(refunded),
    }
    Ok(changes)
}

/// Reads the order's refunds (every page) and returns its changes.
pub(super) async fn order_changes(
    woo: &WooCommerce,
    follow_up: &FollowUp,
) -> Result<Vec<OrderChange>, ChannelError> {
    let invalid =
        |message: String| ChannelError::new(ErrorClass::Permanent, "invalid_notification", message);
    let order = follow_up
        .notification
        .as_object()
        .ok_or_else(|| invalid("order payload is not an object".into()))?;
    let order_id: u64 = follow_up
        .order_id
        .parse()
        .map_err(|_| invalid(format!("order id {:?} is not a number", follow_up.order_id)))?;
    let path = format!("/orders/{order_id}/refunds");
    let mut refunds = Vec::new();
    let mut page: u32 = 1;
    loop {
        let query = vec![
            ("per_page".to_owned(), READ_CHUNK.to_string()),
            ("page".to_owned(), page.to_string()),
        ];
        let response = woo.send(http::Method::GET, &path, &query, None).await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from_response(&response));
        }
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&response.body) else {
            return Err(invalid_response(
                &response,
                "refunds answer is not an array",
            ));
        };
        for item in &items {
            refunds.push(parse_refund(item).map_err(invalid)?);
        }
        if page >= MAX_PAGES || !has_next_page(&response, page) {
            break;
        }
        page += 1;
    }
    changes_of(order, &refunds).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refund(id: u64, lines: &[(u64, i64)]) -> Value {
        json!({
            "id": id,
            "amount": "10.00",
            "line_items": lines.iter().map(|(line, qty)| json!({
                "id": 900 + line,
                "product_id": 22,
                "variation_id": 0,
                "quantity": -qty,
                "sku": "TEE-1",
                "meta_data": [{"id": 1, "key": "_refunded_item_id", "value": line.to_string()}],
            })).collect::<Vec<_>>(),
        })
    }

    fn order(status: &str, restocked: &[(u64, i64)]) -> Map<String, Value> {
        let lines: Vec<Value> = [311u64, 312]
            .iter()
            .map(|id| {
                let meta: Vec<Value> = restocked
                    .iter()
                    .filter(|(line, _)| line == id)
                    .map(|(_, n)| json!({"id": 7, "key": "_restock_refunded_items", "value": n.to_string()}))
                    .collect();
                json!({"id": id, "product_id": 22, "variation_id": 0, "quantity": 3, "sku": "TEE-1", "meta_data": meta})
            })
            .collect();
        json!({"id": 723, "status": status, "line_items": lines, "refunds": [{"id": 1}]})
            .as_object()
            .cloned()
            .unwrap()
    }

    /// (dedup key, kind, (line id, units) per line).
    type Summary = (String, OrderChangeKind, Vec<(String, i64)>);

    fn summary(changes: &[OrderChange]) -> Vec<Summary> {
        changes
            .iter()
            .map(|c| {
                (
                    c.dedup_key.clone(),
                    c.kind,
                    c.lines.iter().map(|l| (l.line_id.clone(), l.qty)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_refund_line_names_the_order_line_in_positive_units() {
        let parsed = parse_refund(&refund(724, &[(311, 2)])).unwrap();
        assert_eq!(parsed.id, 724);
        assert_eq!(parsed.lines[0].line_id, "311");
        assert_eq!(parsed.lines[0].qty, 2);
        assert!(parsed.lines[0]
            .keys
            .contains(&("product_id".to_string(), "22".to_string())));
        let mut broken = refund(725, &[(311, 1)]);
        broken["line_items"][0]["meta_data"] = json!([]);
        assert!(parse_refund(&broken).is_err());
    }

    #[test]
    fn restocked_units_go_to_the_newest_refunds_first() {
        // 724 refunded 1 of line 311 without restock, 726 refunded 2 with
        // restock: the line's running total is 2.
        let refunds = [
            parse_refund(&refund(726, &[(311, 2)])).unwrap(),
            parse_refund(&refund(724, &[(311, 1)])).unwrap(),
        ];
        let changes = changes_of(&order("processing", &[(311, 2)]), &refunds).unwrap();
        let placed = &changes[0];
        assert_eq!(placed.kind, OrderChangeKind::Placed);
        assert_eq!(
            summary(&changes[1..]),
            [
                (
                    "723:refund:724".to_string(),
                    OrderChangeKind::Refunded,
                    vec![("311".to_string(), 1)]
                ),
                (
                    "723:refund:726:restock".to_string(),
                    OrderChangeKind::Restocked,
                    vec![("311".to_string(), 2)]
                ),
            ]
        );
        // Read when only the first refund existed: the same share for it.
        let first = changes_of(&order("processing", &[]), &refunds[1..]).unwrap();
        assert_eq!(summary(&first[1..]), summary(&changes[1..2]));
    }

    #[test]
    fn a_refunded_status_with_refund_lines_is_those_lines_not_a_whole_cancel() {
        let refunds = [parse_refund(&refund(724, &[(311, 3), (312, 3)])).unwrap()];
        let changes = changes_of(&order("refunded", &[(311, 3)]), &refunds).unwrap();
        assert_eq!(
            summary(&changes),
            [
                (
                    "723:refund:724:restock".to_string(),
                    OrderChangeKind::Restocked,
                    vec![("311".to_string(), 3)]
                ),
                (
                    "723:refund:724".to_string(),
                    OrderChangeKind::Refunded,
                    vec![("312".to_string(), 3)]
                ),
            ]
        );
        // An amount-only refund says nothing of lines: the status cancels
        // the whole order, as without refunds.
        let amount_only = [parse_refund(&refund(725, &[])).unwrap()];
        let changes = changes_of(&order("refunded", &[]), &amount_only).unwrap();
        assert_eq!(
            summary(&changes),
            [(
                "723:refunded".to_string(),
                OrderChangeKind::Cancelled,
                vec![]
            )]
        );
    }
}
