//! Orders, cancels and refunds from simulated customers, merchant edits, and the webhooks they
//! send: REST-shaped payloads (`orders/create`, `orders/cancelled`, `refunds/create`,
//! `inventory_levels/update`), signed with HMAC-SHA256 over the body, retried with backoff, the
//! subscription removed after every retry failed.
//!
//! Sources: <https://shopify.dev/docs/apps/build/webhooks/delivery-structure> (headers,
//! retries), <https://shopify.dev/docs/apps/build/webhooks/verify-deliveries> (the signature),
//! <https://shopify.dev/changelog/updates-to-webhook-retry-mechanism>,
//! <https://shopify.dev/docs/api/admin-graphql/2026-01/enums/WebhookSubscriptionTopic>,
//! <https://shopify.dev/api/admin-rest/2023-07/resources/inventorylevel> (the level payload),
//! <https://www.shopify.dev/apps/fulfillment/inventory-management-apps/quantities-states>
//! (an order moves units from available to committed).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::state::{
    gid, level_gid, now_iso, open_order, Item, Level, LineItem, Order, OrderRefund, Quantities,
    State,
};
use super::Shopify;
use crate::common::{
    hmac_sha256_base64, lock, Delivery, NewListing, RetryPolicy, SimBackend, SimCore, SimError,
    SimListing,
};

fn money(units: i64) -> String {
    format!("{}.00", units)
}

impl Shopify {
    fn emit(&self, st: &State, topic: &str, body: &Value) {
        if !self.config.webhook_topics.iter().any(|t| t == topic) {
            return;
        }
        let Some(url) = st.webhook_url.clone() else {
            return;
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let sig = hmac_sha256_base64(self.config.webhook_secret.as_bytes(), &bytes);
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Shopify-Topic".into(), topic.to_string()),
            ("X-Shopify-Hmac-Sha256".into(), sig),
            (
                "X-Shopify-Shop-Domain".into(),
                self.config.shop_domain.clone(),
            ),
            (
                "X-Shopify-API-Version".into(),
                self.config.webhook_api_version.clone(),
            ),
            ("X-Shopify-Webhook-Id".into(), self.core.uuid()),
            ("X-Shopify-Event-Id".into(), self.core.uuid()),
            (
                "X-Shopify-Triggered-At".into(),
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        ];
        let policy = RetryPolicy {
            delays: self.config.webhook_retry_delays.clone(),
            max_success_status: 299,
            timeout: self.config.webhook_timeout,
        };
        let done: Option<crate::common::DoneHook> = if self.config.delete_subscription_after_retries
        {
            let state = Arc::clone(&self.state);
            let failed_url = url.clone();
            Some(Box::new(move |ok: bool| {
                if !ok {
                    let mut st = lock(&state);
                    if st.webhook_url.as_deref() == Some(failed_url.as_str()) {
                        st.webhook_url = None;
                    }
                }
            }))
        } else {
            None
        };
        self.core.send_webhook(
            Delivery {
                url,
                headers,
                body: bytes,
            },
            policy,
            done,
        );
    }

    pub(super) fn emit_level_update(&self, st: &State, item: u64, loc: u64) {
        let Some(lv) = st.items.get(&item).and_then(|i| i.levels.get(&loc)) else {
            return;
        };
        let body = json!({
            "inventory_item_id": item,
            "location_id": loc,
            "available": lv.q.available,
            "updated_at": lv.updated_at,
            "admin_graphql_api_id": level_gid(item, loc),
        });
        self.emit(st, "inventory_levels/update", &body);
    }

    fn order_json(&self, o: &Order) -> Value {
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|l| {
                let fq = if o.cancelled_at.is_some() || o.refunded { 0 } else { l.quantity };
                json!({
                    "id": l.id,
                    "admin_graphql_api_id": gid("LineItem", l.id),
                    "variant_id": l.variant_id,
                    "product_id": l.product_id,
                    "sku": l.sku,
                    "quantity": l.quantity,
                    "fulfillable_quantity": fq,
                    "fulfillment_status": null,
                    "fulfillment_service": "manual",
                    "variant_inventory_management": "shopify",
                    "product_exists": true,
                    "title": format!("Product {}", l.sku),
                    "variant_title": "",
                    "name": format!("Product {}", l.sku),
                    "price": money(10),
                    "price_set": {"shop_money": {"amount": money(10), "currency_code": "EUR"}, "presentment_money": {"amount": money(10), "currency_code": "EUR"}},
                    "total_discount": "0.00",
                    "discount_allocations": [],
                    "tax_lines": [],
                    "properties": [],
                    "requires_shipping": true,
                    "gift_card": false,
                    "grams": 0,
                })
            })
            .collect();
        let total: i64 = o.lines.iter().map(|l| l.quantity * 10).sum();
        json!({
            "id": o.id,
            "admin_graphql_api_id": gid("Order", o.id),
            "name": format!("#{}", o.number),
            "order_number": o.number,
            "number": o.number - 1000,
            "email": "customer@example.com",
            "created_at": o.created_at,
            "updated_at": o.updated_at,
            "processed_at": o.created_at,
            "cancelled_at": o.cancelled_at,
            "cancel_reason": o.cancelled_at.as_ref().map(|_| "customer"),
            "financial_status": if o.cancelled_at.is_some() { "voided" } else if o.refunded { "refunded" } else { "paid" },
            "fulfillment_status": null,
            "currency": "EUR",
            "total_price": money(total),
            "subtotal_price": money(total),
            "total_tax": "0.00",
            "location_id": o.location_id,
            "test": false,
            "line_items": lines,
        })
    }
}

impl SimBackend for Shopify {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let st = lock(&self.state);
        st.items.values().map(|i| st.listing(i)).collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        let loc = st.primary();
        let now = now_iso();
        let mut out = Vec::new();
        for n in items {
            let id = st.next_item;
            st.next_item += 1;
            let variant_id = st.next_variant;
            st.next_variant += 1;
            let product_id = st.next_product;
            st.next_product += 1;
            let mut levels = BTreeMap::new();
            levels.insert(
                loc,
                Level {
                    q: Quantities {
                        available: n.quantity,
                        ..Default::default()
                    },
                    created_at: now.clone(),
                    updated_at: now.clone(),
                },
            );
            let item = Item {
                id,
                sku: n.sku.clone(),
                variant_id,
                product_id,
                created_at: now.clone(),
                updated_at: now.clone(),
                levels,
            };
            out.push(st.listing(&item));
            st.by_sku.insert(n.sku.clone(), id);
            st.items.insert(id, item);
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        let loc = st.primary();
        let mut want: BTreeMap<u64, i64> = BTreeMap::new();
        for (sku, qty) in lines {
            let id = *st
                .by_sku
                .get(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            *want.entry(id).or_default() += qty;
        }
        for (id, qty) in &want {
            let avail = st.items[id]
                .levels
                .get(&loc)
                .map(|l| l.q.available)
                .unwrap_or(0);
            if avail < *qty {
                return Err(SimError::NotAvailable);
            }
        }
        let now = st.order_time();
        let mut order_lines = Vec::new();
        for (sku, qty) in lines {
            let id = st.by_sku[sku];
            let line_id = st.next_line;
            st.next_line += 1;
            let it = st.items.get_mut(&id).expect("checked");
            let lv = it.levels.get_mut(&loc).expect("checked");
            // An order moves units from available to committed.
            lv.q.available -= qty;
            lv.q.committed += qty;
            lv.updated_at = now.clone();
            order_lines.push(LineItem {
                id: line_id,
                item_id: id,
                variant_id: it.variant_id,
                product_id: it.product_id,
                sku: sku.clone(),
                quantity: *qty,
            });
        }
        let id = st.next_order;
        st.next_order += 1;
        let number = st.order_number;
        st.order_number += 1;
        let order = Order {
            id,
            number,
            created_at: now.clone(),
            updated_at: now,
            refunds: Vec::new(),
            cancelled_at: None,
            refunded: false,
            lines: order_lines,
            location_id: loc,
        };
        let body = self.order_json(&order);
        st.orders.insert(id, order.clone());
        self.emit(&st, "orders/create", &body);
        for l in &order.lines {
            self.emit_level_update(&st, l.item_id, loc);
        }
        Ok(
            json!({"order_id": id.to_string(), "admin_graphql_api_id": gid("Order", id), "name": format!("#{number}"), "line_items": body["line_items"]}),
        )
    }

    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let (id, order) = open_order(&st, order_id)?;
        let now = st.order_time();
        for l in &order.lines {
            if let Some(lv) = st
                .items
                .get_mut(&l.item_id)
                .and_then(|i| i.levels.get_mut(&order.location_id))
            {
                lv.q.committed -= l.quantity;
                lv.q.available += l.quantity;
                lv.updated_at = now.clone();
            }
        }
        let o = st.orders.get_mut(&id).expect("exists");
        o.updated_at = now.clone();
        o.cancelled_at = Some(now);
        let o = o.clone();
        let body = self.order_json(&o);
        self.emit(&st, "orders/cancelled", &body);
        for l in &o.lines {
            self.emit_level_update(&st, l.item_id, o.location_id);
        }
        Ok(())
    }

    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let (id, order) = open_order(&st, order_id)?;
        let now = st.order_time();
        for l in &order.lines {
            if let Some(lv) = st
                .items
                .get_mut(&l.item_id)
                .and_then(|i| i.levels.get_mut(&order.location_id))
            {
                // Not documented: a restocking refund of unfulfilled units returns them
                // to available; without restock they leave the shop.
                lv.q.committed -= l.quantity;
                if restock {
                    lv.q.available += l.quantity;
                }
                lv.updated_at = now.clone();
            }
        }
        let refund_id = st.next_refund;
        st.next_refund += 1;
        let o = st.orders.get_mut(&id).expect("exists");
        o.refunded = true;
        o.updated_at = now.clone();
        o.refunds.push(OrderRefund {
            id: refund_id,
            created_at: now.clone(),
            restock,
        });
        let o = o.clone();
        let order_body = self.order_json(&o);
        let rli: Vec<Value> = o
            .lines
            .iter()
            .zip(
                order_body["line_items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
            .enumerate()
            .map(|(i, (l, lj))| {
                json!({
                    "id": refund_id * 100 + i as u64,
                    "quantity": l.quantity,
                    "line_item_id": l.id,
                    "location_id": if restock { json!(o.location_id) } else { Value::Null },
                    "restock_type": if restock { "return" } else { "no_restock" },
                    "subtotal": (l.quantity * 10) as f64,
                    "total_tax": 0.0,
                    "line_item": lj,
                })
            })
            .collect();
        let body = json!({
            "id": refund_id,
            "order_id": o.id,
            "created_at": now,
            "processed_at": now,
            "note": null,
            "restock": restock,
            "refund_line_items": rli,
            "transactions": [],
            "order_adjustments": [],
            "duties": [],
            "return": null,
            "admin_graphql_api_id": gid("Refund", refund_id),
        });
        self.emit(&st, "refunds/create", &body);
        for l in &o.lines {
            self.emit_level_update(&st, l.item_id, o.location_id);
        }
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        let loc = st.primary();
        let id = *st
            .by_sku
            .get(sku)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let now = now_iso();
        let item = st
            .items
            .get_mut(&id)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let level = item.levels.entry(loc).or_insert_with(|| Level {
            q: Quantities::default(),
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        // The admin edits "available" (on hand is derived from it).
        level.q.available = quantity;
        level.updated_at = now;
        let item = item.clone();
        Ok(st.listing(&item))
    }
}
