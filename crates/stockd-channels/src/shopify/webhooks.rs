//! Webhooks: the HMAC over the exact body, and the `orders/create`,
//! `orders/cancelled` and `refunds/create` payloads (REST shapes).

use super::*;

impl Shopify {
    /// Checks `X-Shopify-Hmac-Sha256` over the exact body and reads the
    /// order change the topic carries.
    pub(super) fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        // <https://shopify.dev/docs/apps/build/webhooks/delivery-structure>: base64 HMAC-SHA256 of the raw body with the app's client secret.
        if self.config.webhook_secret.is_empty() {
            // Anyone can sign with an empty key.
            return Err(WebhookError::BadSignature);
        }
        let signature = headers
            .get("x-shopify-hmac-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(WebhookError::BadSignature)?;
        let mut mac = HmacSha256::new_from_slice(self.config.webhook_secret.as_bytes())
            .map_err(|_| WebhookError::BadSignature)?;
        mac.update(body);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(WebhookError::BadSignature);
        }

        let topic = headers
            .get("x-shopify-topic")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WebhookError::BadPayload("missing X-Shopify-Topic".into()))?;
        let payload: Value = serde_json::from_slice(body)
            .map_err(|e| WebhookError::BadPayload(format!("body is not JSON: {e}")))?;
        if !payload.is_object() {
            return Err(WebhookError::BadPayload("body is not a JSON object".into()));
        }
        match topic.as_str() {
            "orders/create" => order_created(&payload).map(WebhookAction::Order),
            "orders/cancelled" => {
                let order_id = required_id(&payload, "id")?;
                Ok(WebhookAction::Order(OrderChange {
                    dedup_key: format!("orders/cancelled:{order_id}"),
                    order_id,
                    kind: OrderChangeKind::Cancelled,
                    lines: Vec::new(),
                }))
            }
            "refunds/create" => refund_created(&payload, &topic),
            _ => Ok(WebhookAction::Ignored { topic }),
        }
    }
}

pub(super) fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => n
            .as_u64()
            .map(|v| v.to_string())
            .or_else(|| n.as_i64().map(|v| v.to_string())),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

pub(super) fn required_id(object: &Value, key: &str) -> Result<String, WebhookError> {
    id_string(object.get(key)).ok_or_else(|| WebhookError::BadPayload(format!("missing {key}")))
}

pub(super) fn required_qty(object: &Value, key: &str) -> Result<i64, WebhookError> {
    object
        .get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| WebhookError::BadPayload(format!("missing or non-integer {key}")))
}

/// The ids a line item offers for matching a listing; absent ones skipped.
pub(super) fn line_keys(line_item: Option<&Value>) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let Some(line_item) = line_item else {
        return keys;
    };
    if let Some(variant) = id_string(line_item.get("variant_id")) {
        let gid = if variant.starts_with("gid://") {
            variant
        } else {
            format!("gid://shopify/ProductVariant/{variant}")
        };
        keys.push(("variant_id".to_string(), gid));
    }
    if let Some(sku) = line_item
        .get("sku")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        keys.push(("sku".to_string(), sku.to_string()));
    }
    keys
}

pub(super) fn order_created(payload: &Value) -> Result<OrderChange, WebhookError> {
    let order_id = required_id(payload, "id")?;
    let items = payload
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| WebhookError::BadPayload("missing line_items".into()))?;
    let mut lines = Vec::with_capacity(items.len());
    for line in items {
        lines.push(OrderLineRef {
            line_id: required_id(line, "id")?,
            keys: line_keys(Some(line)),
            qty: required_qty(line, "quantity")?,
        });
    }
    Ok(OrderChange {
        dedup_key: format!("orders/create:{order_id}"),
        order_id,
        kind: OrderChangeKind::Placed,
        lines,
    })
}

/// `restock_type` values that put units back into stock: `return` and
/// `legacy_restock` (seen), `cancel` (<https://shopify.dev/docs/api/admin-rest/latest/resources/refund>); `no_restock` does not.
pub(super) fn restocks(refund: &Value, line: &Value) -> bool {
    match line.get("restock_type").and_then(Value::as_str) {
        Some(kind) => matches!(kind, "return" | "cancel" | "legacy_restock"),
        // Older payloads carry only the refund-wide `restock` flag.
        None => refund.get("restock").and_then(Value::as_bool) == Some(true),
    }
}

pub(super) fn refund_created(payload: &Value, topic: &str) -> Result<WebhookAction, WebhookError> {
    let refund_id = required_id(payload, "id")?;
    let order_id = required_id(payload, "order_id")?;
    let refund_lines = match payload.get("refund_line_items") {
        Some(Value::Array(lines)) => lines.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => {
            return Err(WebhookError::BadPayload(
                "refund_line_items is not a list".into(),
            ))
        }
    };
    let mut lines = Vec::new();
    for line in refund_lines {
        if !restocks(payload, line) {
            continue;
        }
        let qty = required_qty(line, "quantity")?;
        if qty <= 0 {
            continue;
        }
        let line_item = line.get("line_item").filter(|l| l.is_object());
        let line_id = id_string(line.get("line_item_id"))
            .or_else(|| line_item.and_then(|l| id_string(l.get("id"))))
            .ok_or_else(|| WebhookError::BadPayload("refund line without line_item_id".into()))?;
        lines.push(OrderLineRef {
            line_id,
            keys: line_keys(line_item),
            qty,
        });
    }
    if lines.is_empty() {
        return Ok(WebhookAction::Ignored {
            topic: topic.to_string(),
        });
    }
    Ok(WebhookAction::Order(OrderChange {
        dedup_key: format!("refunds/create:{refund_id}"),
        order_id,
        kind: OrderChangeKind::Restocked,
        lines,
    }))
}
