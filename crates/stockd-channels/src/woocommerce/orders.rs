//! Orders read back by modification date, the backstop for lost webhooks
//! (WooCommerce delivers each webhook once and disables it after repeated
//! failures): `GET /orders?modified_after=…&dates_are_gmt=true&orderby=modified&order=asc`
//! (<https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-orders>).
//!
//! Each order gives the changes its webhook would have given, under the same
//! dedup keys, so an order seen both ways applies once. An order already
//! `completed` when it is read is read as placed (`{id}:processing`): it
//! reserved stock at checkout whether or not stockd heard of it then, and if
//! stockd did, the key is the one it applied (or the ledger refuses the
//! lines as already placed).

use super::*;
use crate::poll::{parse_utc, PollWindow};

/// Pages (of `READ_CHUNK` orders) one poll reads at most (`poll.rs`).
const PAGES_PER_POLL: u32 = 10;
/// WooCommerce's `modified_after` with `dates_are_gmt`: GMT, no zone.
const GMT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// The order as its status webhook would have read it: `completed` is read
/// as `processing` (see the module's note).
fn as_notified(order: &Map<String, Value>) -> Map<String, Value> {
    let mut order = order.clone();
    let completed = order
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.strip_prefix("wc-").unwrap_or(s) == "completed");
    if completed {
        order.insert("status".into(), Value::from("processing"));
    }
    order
}

/// The placement of a cancelled order that had been paid, under the key its
/// `processing` webhook used: a poll may be the first word stockd gets of an
/// order placed and cancelled while both webhooks were lost. WooCommerce
/// sets `date_paid` on the move to a paid status, where core reduces stock;
/// an unpaid order (pending, or on-hold awaiting a transfer) cannot be told
/// from the poll to have held any, so nothing is invented for it. If stockd
/// already has the order's lines under another key, the ledger refuses them
/// as already placed.
fn paid_placement(order: &Map<String, Value>) -> Option<OrderChange> {
    let status = order.get("status").and_then(Value::as_str)?;
    if status.strip_prefix("wc-").unwrap_or(status) != "cancelled" {
        return None;
    }
    let paid = ["date_paid_gmt", "date_paid"].iter().any(|field| {
        order
            .get(*field)
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty())
    });
    if !paid {
        return None;
    }
    let order_id = id_string(order.get("id"))?;
    let lines = order_lines(order).ok()?;
    if lines.is_empty() {
        return None;
    }
    Some(OrderChange {
        dedup_key: format!("{order_id}:processing"),
        order_id,
        kind: OrderChangeKind::Placed,
        lines,
    })
}

impl WooCommerce {
    /// One poll: the orders modified since `cursor` (less the overlap), or
    /// within the configured look-back on the first poll, oldest first.
    pub(super) async fn poll(
        &self,
        cursor: Option<&str>,
        interval: Duration,
    ) -> Result<OrderPoll, ChannelError> {
        let window = PollWindow::parse(cursor);
        let since = window.since(self.now(), self.config.order_lookback);
        let mut newest = window.seen();
        let mut changes = Vec::new();
        let mut page: u32 = 1;
        let capped = loop {
            let query: Vec<(String, String)> = [
                ("modified_after", since.format(GMT_FORMAT).to_string()),
                ("dates_are_gmt", "true".to_string()),
                ("orderby", "modified".to_string()),
                ("order", "asc".to_string()),
                ("per_page", READ_CHUNK.to_string()),
                ("page", page.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let response = self
                .send(http::Method::GET, "/orders", &query, None)
                .await?;
            if !(200..300).contains(&response.status) {
                return Err(error_from_response(&response));
            }
            let Ok(Value::Array(orders)) = serde_json::from_slice::<Value>(&response.body) else {
                return Err(invalid_response(&response, "orders answer is not an array"));
            };
            for order in orders.iter().filter_map(Value::as_object) {
                let modified = order
                    .get("date_modified_gmt")
                    .and_then(Value::as_str)
                    .and_then(parse_utc);
                newest = newest.max(modified);
                changes.extend(self.changes_of_polled(order).await?);
            }
            if !has_next_page(&response, page) {
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

    /// What one polled order asks for. An order that cannot be read (a
    /// webhook with it would have been refused) is skipped with a warning
    /// rather than holding every later order back.
    async fn changes_of_polled(
        &self,
        order: &Map<String, Value>,
    ) -> Result<Vec<OrderChange>, ChannelError> {
        let order = as_notified(order);
        if refunds::has_refunds(&order) {
            let Some(order_id) = id_string(order.get("id")) else {
                tracing::warn!("a polled order has no id; skipped");
                return Ok(Vec::new());
            };
            let follow_up = FollowUp {
                order_id,
                notification: Value::Object(order),
            };
            return match refunds::order_changes(self, &follow_up).await {
                Err(e) if e.class == ErrorClass::Permanent => {
                    tracing::warn!(order = %follow_up.order_id, error = %e,
                        "a polled order's refunds cannot be read; skipped");
                    Ok(Vec::new())
                }
                other => other,
            };
        }
        match status_change(&order) {
            Ok(Some(change)) if change.kind == OrderChangeKind::Cancelled => {
                Ok(paid_placement(&order).into_iter().chain([change]).collect())
            }
            Ok(change) => Ok(change.into_iter().collect()),
            Err(e) => {
                tracing::warn!(error = %e, "a polled order cannot be read; skipped");
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_order_reads_as_placed_under_the_processing_key() {
        let order = json!({"id": 7, "status": "completed", "line_items": [
            {"id": 1, "product_id": 5, "variation_id": 0, "sku": "A", "quantity": 2}
        ]});
        let change = status_change(&as_notified(order.as_object().expect("object")))
            .expect("readable")
            .expect("a change");
        assert_eq!(change.dedup_key, "7:processing");
        assert_eq!(change.kind, OrderChangeKind::Placed);
        assert_eq!(change.lines.len(), 1);
        // Other statuses read as themselves.
        let held = json!({"id": 8, "status": "on-hold", "line_items": []});
        let change = status_change(&as_notified(held.as_object().expect("object")))
            .expect("readable")
            .expect("a change");
        assert_eq!(change.dedup_key, "8:on-hold");
    }

    #[test]
    fn a_paid_cancelled_order_reads_as_placed_then_cancelled_an_unpaid_one_as_cancelled() {
        let lines =
            json!([{"id": 1, "product_id": 5, "variation_id": 0, "sku": "A", "quantity": 2}]);
        let paid = json!({"id": 7, "status": "cancelled", "date_paid_gmt": "2026-11-27T10:00:00",
            "line_items": lines});
        let placed = paid_placement(paid.as_object().expect("object")).expect("a placement");
        assert_eq!(placed.dedup_key, "7:processing");
        assert_eq!(placed.kind, OrderChangeKind::Placed);
        assert_eq!(placed.lines.len(), 1);
        assert_eq!(placed.lines[0].qty, 2);
        let unpaid =
            json!({"id": 8, "status": "cancelled", "date_paid_gmt": null, "line_items": lines});
        assert!(paid_placement(unpaid.as_object().expect("object")).is_none());
        let failed = json!({"id": 9, "status": "failed", "date_paid_gmt": "2026-11-27T10:00:00",
            "line_items": lines});
        assert!(paid_placement(failed.as_object().expect("object")).is_none());
    }
}
