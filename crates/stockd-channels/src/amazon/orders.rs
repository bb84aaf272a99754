//! Orders: polled with `searchOrders` (Orders API v2026-01-01) and received
//! as forwarded `ORDER_CHANGE` notifications; both give the same dedup key
//! per order and state.

use super::*;

/// base64(HMAC-SHA256(secret, body)): stockd's signature convention for
/// forwarded Amazon notifications.
pub(super) fn notification_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Amazon {
    // Orders (<https://developer-docs.amazon.com/sp-api/docs/orders-api-migration-guide>)

    pub(super) async fn search_orders(
        &self,
        after: &str,
        token: Option<&str>,
    ) -> Result<HttpResponse, ChannelError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("lastUpdatedAfter", after),
            ("marketplaceIds", &self.config.marketplace_id),
            ("fulfilledBy", "MERCHANT"),
            ("maxResultsPerPage", "100"),
            ("includedData", "FULFILLMENT"),
        ];
        if let Some(token) = token {
            params.push(("paginationToken", token));
        }
        let path = format!("{ORDERS_PATH}?{}", encode_pairs(&params));
        self.call(Op::SearchOrders, http::Method::GET, &path, None)
            .await
    }

    /// Reads one window of `searchOrders` pages after `cursor`
    /// (`lastUpdatedAfter[|page token]`).
    pub(super) async fn poll_order_changes(
        &self,
        cursor: Option<&str>,
    ) -> Result<OrderPoll, ChannelError> {
        let first_after;
        let (after, mut token) = match cursor.filter(|c| !c.trim().is_empty()) {
            Some(cursor) => split_cursor(cursor.trim()),
            None => {
                let lookback = chrono::Duration::from_std(self.config.order_lookback)
                    .unwrap_or_else(|_| chrono::Duration::days(1));
                first_after = ((self.clock)() - lookback)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                (first_after.as_str(), None)
            }
        };
        let mut token: Option<String> = token.take().map(str::to_owned);
        let mut changes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut newest_update: Option<String> = None;
        let mut window_end: Option<String> = None;
        let mut pages = 0;
        loop {
            let response = match self.search_orders(after, token.as_deref()).await {
                Ok(response) => response,
                Err(error) => return Err(error),
            };
            if response.status == 400 && token.is_some() {
                // An expired page token (24 h): start the window again;
                // re-read orders are deduplicated.
                token = None;
                continue;
            }
            if !(200..300).contains(&response.status) {
                return Err(error_from(&response, "searchOrders"));
            }
            pages += 1;
            let page = json_body(&response, "searchOrders")?;
            let orders = page
                .get("orders")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid_response(&response, "searchOrders answer has no orders"))?;
            for order in orders {
                if let Some(updated) = str_field(order, "lastUpdatedTime") {
                    if newest_update.as_deref().is_none_or(|n| updated > n) {
                        newest_update = Some(updated.to_owned());
                    }
                }
                for change in changes_from_order(order, &self.config.marketplace_id) {
                    if seen.insert(change.dedup_key.clone()) {
                        changes.push(change);
                    }
                }
            }
            if let Some(end) = str_field(&page, "lastUpdatedBefore") {
                window_end = Some(end.to_owned());
            }
            token = page
                .get("pagination")
                .and_then(|p| str_field(p, "nextToken"))
                .map(str::to_owned);
            if token.is_none() || pages >= self.config.order_pages_per_poll.max(1) {
                break;
            }
        }
        let rate = self.rate(Op::SearchOrders).max(1e-6);
        let (cursor, next_poll_after) = match token {
            // More pages: continue from the same window soon (the bucket
            // still paces each call).
            Some(token) => (format!("{after}|{token}"), Duration::ZERO),
            // `lastUpdatedAfter` is inclusive: the window's end (or the
            // newest update seen) is where the next window starts.
            None => (
                window_end
                    .or(newest_update)
                    .unwrap_or_else(|| after.to_owned()),
                Duration::from_secs_f64((1.0 / rate).ceil()),
            ),
        };
        Ok(OrderPoll {
            changes,
            cursor: Some(cursor),
            next_poll_after,
        })
    }

    /// Checks stockd's signature over a forwarded `ORDER_CHANGE`
    /// notification and reads the order change it carries.
    pub(super) fn verify_notification(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        // SQS deliveries carry no signature; stockd's forwarder signs the
        // exact body (agreed convention). An empty secret would let anyone sign.
        let Some(signature) = header_str(headers, SIGNATURE_HEADER) else {
            return Err(WebhookError::BadSignature);
        };
        if self.config.notification_secret.is_empty() {
            return Err(WebhookError::BadSignature);
        }
        let expected = notification_signature(&self.config.notification_secret, body);
        if expected.is_empty() || !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(WebhookError::BadSignature);
        }
        notification_action(body, &self.config.seller_id, &self.config.marketplace_id)
    }
}

// ---------------------------------------------------------------------------
// Orders: searchOrders (<https://developer-docs.amazon.com/sp-api/docs/orders-api-migration-guide>) and ORDER_CHANGE (<https://developer-docs.amazon.com/sp-api/docs/notification-type-values>), one dedup key scheme.

/// What stockd does with an order in a state, from either source's status
/// names: v2026 `fulfillmentStatus` (PENDING, UNSHIPPED, …) or the
/// notification's v0 `OrderStatus` (Pending, Unshipped, …).
///
/// Orders waiting for payment or shipment hold stock (Placed); cancelled
/// ones release it. Shipped / unfulfillable / invoice states change
/// nothing: a placed order was reported in an earlier state, and shipping
/// is settled by stockd's own ship events.
pub(super) fn kind_of_status(status: &str) -> Option<OrderChangeKind> {
    let normal: String = status
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    match normal.as_str() {
        "PENDING" | "PENDINGAVAILABILITY" | "UNSHIPPED" | "PARTIALLYSHIPPED" => {
            Some(OrderChangeKind::Placed)
        }
        "CANCELLED" | "CANCELED" => Some(OrderChangeKind::Cancelled),
        _ => None,
    }
}

/// The same change of the same order has the same key, whether it came from
/// a poll or a notification.
pub(super) fn dedup_key(order_id: &str, kind: OrderChangeKind) -> String {
    let state = match kind {
        OrderChangeKind::Placed => "placed",
        OrderChangeKind::Cancelled => "cancelled",
        OrderChangeKind::Restocked => "restocked",
        OrderChangeKind::Refunded => "refunded",
    };
    format!("{order_id}:{state}")
}

/// Builds the change; `None` when it carries nothing to apply (a placed
/// order without matchable lines). Cancellations release the whole order
/// (empty `lines`): cancelled lines may report 0 ordered.
pub(super) fn order_change(
    order_id: &str,
    kind: OrderChangeKind,
    lines: Vec<OrderLineRef>,
) -> Option<OrderChange> {
    let lines = match kind {
        OrderChangeKind::Placed => {
            if lines.is_empty() {
                return None;
            }
            lines
        }
        _ => Vec::new(),
    };
    Some(OrderChange {
        dedup_key: dedup_key(order_id, kind),
        order_id: order_id.to_owned(),
        kind,
        lines,
    })
}

pub(super) fn order_line(
    line_id: Option<&str>,
    sku: Option<&str>,
    qty: Option<i64>,
) -> Option<OrderLineRef> {
    let (line_id, sku, qty) = (line_id?, sku?, qty?);
    if qty <= 0 {
        return None;
    }
    Some(OrderLineRef {
        line_id: line_id.to_owned(),
        keys: vec![("seller_sku".to_owned(), sku.to_owned())],
        qty,
    })
}

/// What a poll reads of one order: its change, and for a cancelled order
/// whose lines still say what was ordered, the placement first — a poll may
/// be the first word stockd gets of an order placed and cancelled while its
/// notifications were lost (the same dedup key as the placement's own, so a
/// placement stockd already has is a duplicate).
pub(super) fn changes_from_order(order: &Value, marketplace_id: &str) -> Vec<OrderChange> {
    let Some(change) = change_from_order(order, marketplace_id) else {
        return Vec::new();
    };
    if change.kind != OrderChangeKind::Cancelled {
        return vec![change];
    }
    let placed = order_change(&change.order_id, OrderChangeKind::Placed, lines_of(order));
    placed.into_iter().chain([change]).collect()
}

/// The lines of a v2026 `Order` that name a SKU and a positive quantity.
fn lines_of(order: &Value) -> Vec<OrderLineRef> {
    order
        .get("orderItems")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    order_line(
                        str_field(item, "orderItemId"),
                        item.get("product").and_then(|p| str_field(p, "sellerSku")),
                        int_field(item.get("quantityOrdered")),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One v2026 `Order` → a change, or `None` (with the reason logged).
pub(super) fn change_from_order(order: &Value, marketplace_id: &str) -> Option<OrderChange> {
    let order_id = str_field(order, "orderId")?;
    if let Some(marketplace) = order
        .get("salesChannel")
        .and_then(|c| str_field(c, "marketplaceId"))
    {
        if marketplace != marketplace_id {
            return None;
        }
    }
    let fulfillment = order.get("fulfillment");
    // Amazon-fulfilled orders do not draw on merchant stock.
    if fulfillment.and_then(|f| str_field(f, "fulfilledBy")) == Some("AMAZON") {
        return None;
    }
    let Some(status) = fulfillment.and_then(|f| str_field(f, "fulfillmentStatus")) else {
        tracing::warn!(order_id, "amazon order without fulfillmentStatus skipped");
        return None;
    };
    let kind = kind_of_status(status)?;
    let lines = lines_of(order);
    order_change(order_id, kind, lines)
}

/// Splits a cursor: `"<lastUpdatedAfter>"` or, while pages remain,
/// `"<lastUpdatedAfter>|<paginationToken>"`.
pub(super) fn split_cursor(cursor: &str) -> (&str, Option<&str>) {
    match cursor.split_once('|') {
        Some((after, token)) if !token.is_empty() => (after, Some(token)),
        Some((after, _)) => (after, None),
        None => (cursor, None),
    }
}

pub(super) fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub(super) fn notification_action(
    body: &[u8],
    seller_id: &str,
    marketplace_id: &str,
) -> Result<WebhookAction, WebhookError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::BadPayload(format!("invalid JSON: {e}")))?;
    let kind_name = value
        .get("NotificationType")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::BadPayload("missing NotificationType".into()))?;
    if kind_name != "ORDER_CHANGE" {
        return Ok(WebhookAction::Ignored {
            topic: kind_name.to_owned(),
        });
    }
    let ignored = || {
        Ok(WebhookAction::Ignored {
            topic: kind_name.to_owned(),
        })
    };
    let change = value
        .get("Payload")
        .and_then(|p| p.get("OrderChangeNotification"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            WebhookError::BadPayload("missing Payload.OrderChangeNotification".into())
        })?;
    let get = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let order_id = get(change, "AmazonOrderId")
        .ok_or_else(|| WebhookError::BadPayload("missing AmazonOrderId".into()))?;
    if let Some(seller) = get(change, "SellerId") {
        if !seller_id.is_empty() && seller != seller_id {
            return ignored();
        }
    }
    let summary = change
        .get("Summary")
        .and_then(Value::as_object)
        .ok_or_else(|| WebhookError::BadPayload(format!("order {order_id}: missing Summary")))?;
    if get(summary, "MarketplaceId").is_some_and(|m| m != marketplace_id)
        || get(summary, "FulfillmentType").as_deref() == Some("AFN")
    {
        return ignored();
    }
    let status = get(summary, "OrderStatus").ok_or_else(|| {
        WebhookError::BadPayload(format!("order {order_id}: missing OrderStatus"))
    })?;
    let Some(kind) = kind_of_status(&status) else {
        return ignored();
    };
    let items = match summary.get("OrderItems") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(WebhookError::BadPayload(format!(
                "order {order_id}: OrderItems is not an array"
            )))
        }
    };
    let lines = items
        .iter()
        .filter_map(|item| {
            order_line(
                str_field(item, "OrderItemId"),
                str_field(item, "SellerSKU"),
                int_field(item.get("Quantity")),
            )
        })
        .collect();
    match order_change(&order_id, kind, lines) {
        Some(change) => Ok(WebhookAction::Order(change)),
        // A summary without items: the next poll reads the order.
        None => ignored(),
    }
}
