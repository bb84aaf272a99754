//! Order refunds (REST docs "Refunds":
//! <https://woocommerce.github.io/woocommerce-rest-api-docs/#refunds>):
//! `POST /orders/{id}/refunds` with `line_items[{id, quantity}]` and
//! `api_restock`, `GET /orders/{id}/refunds` (paginated) and
//! `GET /orders/{id}/refunds/{refund_id}`.
//!
//! As WooCommerce does it (`wc_create_refund`, `wc_restock_refunded_items`):
//! a refund line has a negative quantity and the meta `_refunded_item_id`;
//! a restock raises the product's stock and the order line's running meta
//! `_restock_refunded_items` (only where the order reduced stock); the order
//! names the refund in `refunds` and turns `refunded` once every unit is
//! refunded; `order.updated` fires (`woocommerce_order_refunded` is one of
//! its topic hooks in
//! <https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/class-wc-webhook.php>).
//! `api_restock` defaults to true: the v2 controller always restocks, and
//! the v3 parameter keeps that default (UNCONFIRMED for every version).

use super::{wc_error, wc_json, Ctx, Line, Woo, WooState};
use crate::common::lock;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

/// One refund as stored.
#[derive(Debug, Clone)]
pub(super) struct SimRefund {
    pub id: u64,
    pub order_id: u64,
    pub created: String,
    pub amount: i64,
    pub reason: String,
    /// (refund item id, order line, units refunded).
    pub lines: Vec<(u64, Line, i64)>,
}

/// Units of an order line refunded so far.
fn refunded_qty(st: &WooState, order_id: u64, line_id: u64) -> i64 {
    st.refunds
        .values()
        .filter(|r| r.order_id == order_id)
        .flat_map(|r| r.lines.iter())
        .filter(|(_, line, _)| line.id == line_id)
        .map(|(_, _, qty)| qty)
        .sum()
}

fn refund_json(r: &SimRefund, home: &str) -> Value {
    let lines: Vec<Value> = r
        .lines
        .iter()
        .map(|(item_id, line, qty)| {
            let total = format!("-{}.00", qty * 10);
            json!({
                "id": item_id,
                "name": line.name,
                "product_id": line.product_id,
                "variation_id": line.variation_id,
                "quantity": -qty,
                "tax_class": "",
                "subtotal": total,
                "subtotal_tax": "0.00",
                "total": total,
                "total_tax": "0.00",
                "taxes": [],
                "meta_data": [{"id": item_id + 10_000, "key": "_refunded_item_id", "value": line.id.to_string()}],
                "sku": line.sku,
                "price": -10,
            })
        })
        .collect();
    let base = format!("{home}/wp-json/wc/v3/orders/{}/refunds", r.order_id);
    json!({
        "id": r.id,
        "date_created": r.created,
        "date_created_gmt": r.created,
        "amount": format!("{}.00", r.amount),
        "reason": r.reason,
        "refunded_by": 1,
        "refunded_payment": false,
        "meta_data": [],
        "line_items": lines,
        "_links": {
            "self": [{"href": format!("{base}/{}", r.id)}],
            "collection": [{"href": base}],
            "up": [{"href": format!("{home}/wp-json/wc/v3/orders/{}", r.order_id)}],
        },
    })
}

fn invalid_order() -> Response {
    wc_error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_invalid_order_id",
        "Invalid order ID.",
    )
}

fn cannot_create(message: &str) -> Response {
    // wc_create_refund failures answer 500 in the v2/v3 controllers.
    wc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "woocommerce_rest_cannot_create_order_refund",
        message,
    )
}

/// Records an amount-only refund (a status set to `refunded` by hand).
pub(super) fn record_amount_only(st: &mut WooState, order_id: u64, refund_id: u64, amount: i64) {
    let created = st.now_local();
    st.refunds.insert(
        refund_id,
        SimRefund {
            id: refund_id,
            order_id,
            created,
            amount,
            reason: String::new(),
            lines: Vec::new(),
        },
    );
}

impl Woo {
    pub(super) fn list_refunds(&self, order_id: &str, ctx: &Ctx) -> Response {
        let st = lock(&self.state);
        let Some(order) = order_id
            .parse::<u64>()
            .ok()
            .and_then(|id| st.orders.get(&id))
        else {
            return invalid_order();
        };
        // Newest first (`order=desc` by date is the default).
        let items: Vec<Value> = st
            .refunds
            .values()
            .rev()
            .filter(|r| r.order_id == order.id)
            .map(|r| refund_json(r, &self.home))
            .collect();
        drop(st);
        self.paginate(ctx, items)
    }

    pub(super) fn get_refund(&self, order_id: &str, refund_id: &str) -> Response {
        let st = lock(&self.state);
        let Some(order) = order_id
            .parse::<u64>()
            .ok()
            .and_then(|id| st.orders.get(&id))
        else {
            return invalid_order();
        };
        match refund_id
            .parse::<u64>()
            .ok()
            .and_then(|id| st.refunds.get(&id))
            .filter(|r| r.order_id == order.id)
        {
            Some(r) => wc_json(StatusCode::OK, &refund_json(r, &self.home)),
            None => wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_invalid_order_refund_id",
                "Invalid order refund ID.",
            ),
        }
    }

    pub(super) fn create_refund(&self, order_id: &str, ctx: &Ctx) -> Response {
        let mut st = lock(&self.state);
        let Some(order) = order_id
            .parse::<u64>()
            .ok()
            .and_then(|id| st.orders.get(&id))
            .cloned()
        else {
            return invalid_order();
        };
        let restock = match ctx.body.get("api_restock") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return wc_error(
                    StatusCode::BAD_REQUEST,
                    "rest_invalid_param",
                    "Invalid parameter(s): api_restock",
                )
            }
        };
        let reason = ctx
            .body
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut lines = Vec::new();
        for item in ctx
            .body
            .get("line_items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let line_id = item.get("id").and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            });
            let Some(line) = line_id.and_then(|id| order.lines.iter().find(|l| l.id == id)) else {
                return cannot_create("Invalid line item.");
            };
            let qty = item.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            if qty <= 0 {
                continue;
            }
            let left = line.quantity - refunded_qty(&st, order.id, line.id);
            if qty > left {
                return cannot_create("Invalid refund amount.");
            }
            lines.push((line.clone(), qty));
        }
        let amount = match ctx.body.get("amount").and_then(|v| match v {
            Value::String(s) => s.parse::<f64>().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        }) {
            Some(a) if a < 0.0 => {
                return wc_error(
                    StatusCode::BAD_REQUEST,
                    "woocommerce_rest_invalid_order_refund",
                    "Refund amount must be greater than zero.",
                )
            }
            Some(a) => a.round() as i64,
            None => lines.iter().map(|(_, qty)| qty * 10).sum(),
        };
        let reduced = matches!(
            order.status.as_str(),
            "processing" | "completed" | "on-hold"
        );
        if restock && reduced {
            let back: Vec<Line> = lines
                .iter()
                .map(|(line, qty)| Line {
                    quantity: *qty,
                    ..line.clone()
                })
                .collect();
            Woo::move_stock(&mut st, &back, 1);
        }
        let refund_id = st.post_id();
        let mut items = Vec::new();
        for (line, qty) in lines {
            let item_id = st.next_line;
            st.next_line += 1;
            items.push((item_id, line, qty));
        }
        let now = st.now_local();
        let refund = SimRefund {
            id: refund_id,
            order_id: order.id,
            created: now.clone(),
            amount,
            reason,
            lines: items,
        };
        st.refunds.insert(refund_id, refund.clone());
        let all_refunded = order
            .lines
            .iter()
            .all(|l| refunded_qty(&st, order.id, l.id) >= l.quantity);
        let o = st.orders.get_mut(&order.id).expect("exists");
        if restock && reduced {
            for (_, line, qty) in &refund.lines {
                if let Some(l) = o.lines.iter_mut().find(|l| l.id == line.id) {
                    l.restocked += qty;
                }
            }
        }
        o.refunds.push((refund_id, amount));
        if all_refunded {
            o.status = "refunded".into();
        }
        o.modified = now;
        let o = o.clone();
        self.emit(&mut st, "order.updated", &o);
        wc_json(StatusCode::CREATED, &refund_json(&refund, &self.home))
    }
}
