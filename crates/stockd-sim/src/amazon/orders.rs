//! Orders API v2026-01-01: `searchOrders` and `getOrder` (model:
//! `specs/amazon/orders_2026-01-01.json`;
//! <https://developer-docs.amazon.com/sp-api/docs/orders-api-migration-guide>).

use super::*;

pub(super) const FULFILLMENT_STATUSES: [&str; 7] = [
    "PENDING_AVAILABILITY",
    "PENDING",
    "UNSHIPPED",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "CANCELLED",
    "UNFULFILLABLE",
];
pub(super) const ORDER_DATASETS: [&str; 11] = [
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
];

pub(super) fn parse_time(q: &Query, key: &str) -> Result<Option<DateTime<Utc>>, Response> {
    match q.one(key) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid_input(&format!("{key} must be an ISO 8601 date-time."))),
    }
}

pub(super) fn order_datasets(q: &Query) -> Result<Vec<String>, Response> {
    let d = q.list("includedData").unwrap_or_default();
    if let Some(bad) = d.iter().find(|x| !ORDER_DATASETS.contains(&x.as_str())) {
        return Err(invalid_input(&format!(
            "Invalid includedData value '{bad}'."
        )));
    }
    Ok(d)
}

/// The v0-style status used in ORDER_CHANGE summaries (OrderChangeNotification.json enum).
pub(super) fn legacy_status(s: &str) -> &'static str {
    match s {
        "PENDING" => "Pending",
        "PENDING_AVAILABILITY" => "PendingAvailability",
        "PARTIALLY_SHIPPED" => "PartiallyShipped",
        "SHIPPED" => "Shipped",
        "CANCELLED" => "Canceled",
        "UNFULFILLABLE" => "Unfulfillable",
        _ => "Unshipped",
    }
}

impl Amazon {
    /// An `Order`; optional datasets only when requested through `includedData` (the
    /// defaults of the real API are UNCONFIRMED, so nothing optional is sent unasked).
    pub(super) fn order_json(&self, o: &Order, datasets: &[String]) -> Value {
        let want = |d: &str| datasets.iter().any(|x| x == d);
        let cancelled = o.status == "CANCELLED";
        let shipped = o.status == "SHIPPED";
        let items: Vec<Value> = o
            .items
            .iter()
            .map(|i| {
                let mut v = json!({
                    "orderItemId": i.id,
                    "quantityOrdered": i.quantity,
                    "product": {
                        "asin": i.asin,
                        "title": format!("Simulated item {}", i.sku),
                        "sellerSku": i.sku,
                        "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
                        "price": {"unitPrice": {"amount": "10.00", "currencyCode": "EUR"}},
                    },
                });
                if want("FULFILLMENT") {
                    let done = if shipped { i.quantity } else { 0 };
                    let open = if shipped || cancelled { 0 } else { i.quantity };
                    v["fulfillment"] = json!({"quantityFulfilled": done, "quantityUnfulfilled": open});
                }
                if want("CANCELLATION") && cancelled {
                    v["cancellation"] = json!({
                        "cancellationRequest": {"requester": "BUYER", "cancelReason": "Buyer canceled"},
                        "cancellationExecution": {"cancelledBy": "BUYER", "cancelReason": "Buyer canceled"},
                    });
                }
                v
            })
            .collect();
        let mut v = json!({
            "orderId": o.id,
            "createdTime": ts(&o.created),
            "lastUpdatedTime": ts(&o.updated),
            "salesChannel": {
                "channelName": "AMAZON",
                "marketplaceId": self.config.marketplace_id,
                "marketplaceName": "Amazon.nl",
            },
            "orderItems": items,
        });
        if want("FULFILLMENT") {
            v["fulfillment"] = json!({
                "fulfillmentStatus": o.status,
                "fulfilledBy": "MERCHANT",
                "fulfillmentServiceLevel": "STANDARD",
            });
        }
        v
    }
}

pub(super) async fn search_orders(
    State(sim): State<Sim>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let op = "searchOrders";
    let r = async {
        sim.gate(op, &headers).await?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        let ca = parse_time(&q, "createdAfter")?;
        let cb = parse_time(&q, "createdBefore")?;
        let ua = parse_time(&q, "lastUpdatedAfter")?;
        let ub = parse_time(&q, "lastUpdatedBefore")?;
        // Exactly one of createdAfter / lastUpdatedAfter, and no mixing (parameter notes).
        let by_created = match (ca, ua) {
            (Some(_), None) if ub.is_none() => true,
            (None, Some(_)) if cb.is_none() => false,
            _ => {
                return Err(invalid_input(
                    "Exactly one of createdAfter and lastUpdatedAfter must be provided, without mixing created and lastUpdated parameters.",
                ))
            }
        };
        let t_now = sim.now();
        let (after, before) = if by_created { (ca, cb) } else { (ua, ub) };
        let after = after.unwrap_or(t_now);
        if let Some(b) = before {
            if b < after || b > t_now - chrono::Duration::minutes(2) {
                return Err(invalid_input(
                    "The before date must be equal to or after the after date and at least two minutes before the time of the request.",
                ));
            }
        }
        let statuses = q.list("fulfillmentStatuses").unwrap_or_default();
        if let Some(bad) = statuses
            .iter()
            .find(|s| !FULFILLMENT_STATUSES.contains(&s.as_str()))
        {
            return Err(invalid_input(&format!("Invalid fulfillmentStatuses value '{bad}'.")));
        }
        let marketplaces = q.list("marketplaceIds").unwrap_or_default();
        if marketplaces.len() > 50 {
            return Err(invalid_input("At most 50 marketplaceIds are allowed."));
        }
        let fulfilled_by = q.list("fulfilledBy").unwrap_or_default();
        if let Some(bad) = fulfilled_by
            .iter()
            .find(|s| *s != "MERCHANT" && *s != "AMAZON")
        {
            return Err(invalid_input(&format!("Invalid fulfilledBy value '{bad}'.")));
        }
        let page_size = match q.one("maxResultsPerPage") {
            None => 100,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(invalid_input("maxResultsPerPage must be between 1 and 100.")),
            },
        };
        let datasets = order_datasets(&q)?;
        // A token is valid only with the same filters (maxResultsPerPage and includedData may
        // change between pages).
        let key: String = {
            let mut parts: Vec<String> = q
                .0
                .iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "maxResultsPerPage" | "includedData" | "paginationToken")
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.sort();
            parts.join("&")
        };
        let mut st = lock(&sim.state);
        let ttl = sim.config.pagination_token_ttl;
        let offset = match q.one("paginationToken") {
            None => 0,
            Some(t) => match st.page_tokens.get(t) {
                Some(p) if p.key == key && p.issued.elapsed() < ttl => p.offset,
                Some(p) if p.issued.elapsed() >= ttl => {
                    return Err(invalid_input("The paginationToken has expired."))
                }
                _ => return Err(invalid_input("Invalid paginationToken.")),
            },
        };
        let mp = &sim.config.marketplace_id;
        let mut hits: Vec<&Order> = st
            .orders
            .iter()
            .filter(|o| {
                let t = if by_created { o.created } else { o.updated };
                t >= after && before.is_none_or(|b| t <= b)
            })
            .filter(|o| statuses.is_empty() || statuses.iter().any(|s| s == o.status))
            .filter(|_| marketplaces.is_empty() || marketplaces.iter().any(|m| m == mp))
            .filter(|_| fulfilled_by.is_empty() || fulfilled_by.iter().any(|f| f == "MERCHANT"))
            .collect();
        if by_created {
            hits.sort_by_key(|o| o.created);
        } else {
            hits.sort_by_key(|o| o.updated);
        }
        let total = hits.len();
        let orders: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|o| sim.order_json(o, &datasets))
            .collect();
        let bound = ts(&before.unwrap_or(t_now));
        let mut resp = json!({"orders": orders});
        resp[if by_created { "createdBefore" } else { "lastUpdatedBefore" }] = json!(bound);
        if offset + page_size < total {
            let token = sim.core.uuid().replace('-', "");
            st.page_tokens.retain(|_, p| p.issued.elapsed() < ttl);
            st.page_tokens.insert(
                token.clone(),
                PageToken {
                    key,
                    offset: offset + page_size,
                    issued: Instant::now(),
                },
            );
            resp["pagination"] = json!({"nextToken": token});
        }
        Ok(json_response(StatusCode::OK, &resp))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

pub(super) async fn get_order(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let op = "getOrder";
    let r = async {
        sim.gate(op, &headers).await?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        let datasets = order_datasets(&q)?;
        let st = lock(&sim.state);
        match st.orders.iter().find(|o| o.id == id) {
            Some(o) => Ok(json_response(
                StatusCode::OK,
                &json!({"order": sim.order_json(o, &datasets)}),
            )),
            None => Err(amz_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested order was not found.",
                "",
            )),
        }
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}
