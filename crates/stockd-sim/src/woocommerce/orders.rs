//! Orders: list and status updates, stock moves on status changes, and the order webhooks
//! (<https://woocommerce.github.io/woocommerce-rest-api-docs/#orders>,
//! <https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks>).

use super::*;

impl Woo {
    /// `status`, `modified_after` (exclusive, to the second; the simulated
    /// shop keeps GMT, so `dates_are_gmt` changes nothing), `orderby` and
    /// `order`, then the page.
    pub(super) fn list_orders(&self, ctx: &Ctx) -> Response {
        let param = |name: &str| {
            ctx.query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let status = param("status");
        let modified_after = match param("modified_after").map(|v| parse_date(&v)) {
            None => None,
            Some(Some(at)) => Some(at),
            Some(None) => {
                return wc_json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": "rest_invalid_param", "message": "Invalid parameter(s): modified_after",
                        "data": {"status": 400, "params": {"modified_after": "Invalid date."}}}),
                )
            }
        };
        let st = lock(&self.state);
        let items: Vec<Value> = st
            .orders
            .values()
            .rev()
            .filter(|o| {
                status
                    .as_ref()
                    .is_none_or(|s| s == "any" || s.split(',').any(|x| x == o.status))
            })
            .filter(|o| {
                modified_after
                    .is_none_or(|after| parse_date(&o.modified).is_some_and(|at| at > after))
            })
            .map(|o| self.order_json(o))
            .collect();
        drop(st);
        match super::collection::order_items(ctx, items) {
            Ok(items) => self.paginate(ctx, items),
            Err(refused) => *refused,
        }
    }

    pub(super) fn get_order(&self, id: &str) -> Response {
        let st = lock(&self.state);
        match id.parse::<u64>().ok().and_then(|i| st.orders.get(&i)) {
            Some(o) => wc_json(StatusCode::OK, &self.order_json(o)),
            None => wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_shop_order_invalid_id",
                "Invalid ID.",
            ),
        }
    }

    pub(super) fn update_order(&self, id: &str, ctx: &Ctx) -> Response {
        let Some(oid) = id.parse::<u64>().ok() else {
            return wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_shop_order_invalid_id",
                "Invalid ID.",
            );
        };
        let status = ctx
            .body
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string);
        let result = match status.as_deref() {
            Some("cancelled") => self.cancel(&oid.to_string()),
            Some("refunded") => self.refund(&oid.to_string(), true),
            Some(s) => self.set_status(oid, s),
            None => Ok(()),
        };
        match result {
            Err(SimError::UnknownOrder(_)) => wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_shop_order_invalid_id",
                "Invalid ID.",
            ),
            Err(e) => wc_error(
                StatusCode::BAD_REQUEST,
                "woocommerce_rest_shop_order_invalid_status",
                &e.to_string(),
            ),
            Ok(()) => {
                let st = lock(&self.state);
                match st.orders.get(&oid) {
                    Some(o) => wc_json(StatusCode::OK, &self.order_json(o)),
                    None => wc_error(
                        StatusCode::NOT_FOUND,
                        "woocommerce_rest_shop_order_invalid_id",
                        "Invalid ID.",
                    ),
                }
            }
        }
    }

    pub(super) fn set_status(&self, oid: u64, s: &str) -> Result<(), SimError> {
        const OK: &[&str] = &["pending", "processing", "on-hold", "completed", "failed"];
        if !OK.contains(&s) {
            return Err(SimError::BadRequest(format!("status {s}")));
        }
        let mut st = lock(&self.state);
        let now = st.now_local();
        let o = st
            .orders
            .get_mut(&oid)
            .ok_or_else(|| SimError::UnknownOrder(oid.to_string()))?;
        if o.status == s {
            return Ok(());
        }
        o.status = s.to_string();
        if matches!(s, "processing" | "completed") && o.paid.is_none() {
            o.paid = Some(now.clone());
        }
        o.modified = now;
        let o = o.clone();
        self.emit(&mut st, "order.updated", &o);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Webhooks

    pub(super) fn emit(&self, st: &mut WooState, topic: &str, order: &Order) {
        if !self.config.webhook_topics.iter().any(|t| t == topic) {
            return;
        }
        let Some(wh) = st.webhook.as_ref().filter(|w| w.status == "active") else {
            return;
        };
        let url = wh.url.clone();
        let body = php_json_encode(&self.order_json(order))
            .trim()
            .as_bytes()
            .to_vec();
        let sig = hmac_sha256_base64(self.config.webhook_secret.as_bytes(), &body);
        let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
        // wp_hash(webhook_id . time()): the same within one second, so ids can collide.
        let secs = chrono::Utc::now().timestamp();
        let delivery_id = {
            let h = hmac_sha256(
                b"wp_salt_sim",
                format!("{}{}", self.config.webhook_id, secs).as_bytes(),
            );
            h.iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (
                "User-Agent".into(),
                "WooCommerce/9.8.0 Hookshot (WordPress/6.8.0)".into(),
            ),
            ("X-WC-Webhook-Source".into(), format!("{}/", self.home)),
            ("X-WC-Webhook-Topic".into(), topic.to_string()),
            ("X-WC-Webhook-Resource".into(), resource.to_string()),
            ("X-WC-Webhook-Event".into(), event.to_string()),
            ("X-WC-Webhook-Signature".into(), sig),
            ("X-WC-Webhook-ID".into(), self.config.webhook_id.to_string()),
            ("X-WC-Webhook-Delivery-ID".into(), delivery_id),
        ];
        let state = Arc::clone(&self.state);
        let done: crate::common::DoneHook = Box::new(move |ok: bool| {
            let mut st = lock(&state);
            if let Some(w) = st.webhook.as_mut() {
                if ok {
                    w.failure_count = 0;
                } else if w.failure_count > 5 {
                    // In code: disabled at the failure after failure_count exceeded 5.
                    w.status = "disabled".into();
                } else {
                    w.failure_count += 1;
                }
            }
        });
        self.core.send_webhook(
            Delivery { url, headers, body },
            RetryPolicy {
                delays: vec![],
                max_success_status: 302,
                timeout: self.config.webhook_timeout,
            },
            Some(done),
        );
    }

    pub(super) fn sellable(p: &Product, qty: i64) -> bool {
        if p.stock_status == "outofstock" {
            return false;
        }
        !(p.manage_stock && p.backorders == "no" && p.stock_quantity.unwrap_or(0) < qty)
    }

    /// Move stock by `sign × qty` for every line (−1 reduce, +1 restore).
    pub(super) fn move_stock(st: &mut WooState, lines: &[Line], sign: i64) {
        let now = st.now_local();
        let mut parents = Vec::new();
        for l in lines {
            let id = if l.variation_id != 0 {
                l.variation_id
            } else {
                l.product_id
            };
            if let Some(p) = st.products.get_mut(&id) {
                if p.manage_stock {
                    p.stock_quantity = Some(p.stock_quantity.unwrap_or(0) + sign * l.quantity);
                    auto_status(p);
                    p.modified = now.clone();
                }
                if p.kind == Kind::Variation {
                    parents.push(p.parent_id);
                }
            }
        }
        for p in parents {
            st.sync_parent(p);
        }
    }
}

/// A date as the REST API takes it (`rest_parse_date`: ISO 8601, with or
/// without a zone; without one it is the shop's time, GMT here), to the second.
fn parse_date(text: &str) -> Option<chrono::NaiveDateTime> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.naive_utc())
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()
}
