//! Orders (FBR): the paged list with its filters, the order detail, and the seller's answer
//! to customer cancellation requests.

use super::http::{bad_request, not_found, vnd_json, Ctx};
use super::state::{round2, ts, Action, Bol, NewProcess};
use super::*;

impl Bol {
    pub(super) fn list_orders(&self, ctx: &Ctx) -> Response {
        let mut violations = Vec::new();
        let page = match ctx.q("page") {
            None => 1,
            Some(p) => match p.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    violations.push(("page".into(), "Must be greater than or equal to 1.".into()));
                    1
                }
            },
        };
        let method = ctx.q("fulfilment-method").unwrap_or("FBR");
        if !["FBR", "FBB", "ALL"].contains(&method) {
            violations.push((
                "fulfilment-method".into(),
                format!(
                    "Request contains invalid value(s): '{method}', allowed values: FBR, FBB, ALL."
                ),
            ));
        }
        let status = ctx.q("status").unwrap_or("OPEN");
        if !["OPEN", "SHIPPED", "ALL"].contains(&status) {
            violations.push((
                "status".into(),
                format!("Request contains invalid value(s): '{status}', allowed values: OPEN, SHIPPED, ALL."),
            ));
        }
        let interval = match ctx.q("change-interval-minute") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=60).contains(&n) => Some(n),
                _ => {
                    violations.push((
                        "change-interval-minute".into(),
                        "Must be an integer between 1 and 60.".into(),
                    ));
                    None
                }
            },
        };
        // Liberal: a date, or a date-time whose date part is used.
        let change_date = match ctx.q("latest-change-date") {
            None => None,
            Some(v) => {
                match chrono::NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), "%Y-%m-%d") {
                    Ok(d) => Some(d),
                    Err(_) => {
                        violations.push((
                        "latest-change-date".into(),
                        format!("Request contains invalid value(s): '{v}', expected a date (yyyy-MM-dd)."),
                    ));
                        None
                    }
                }
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let now = self.now();
        let mut out = Vec::new();
        // Every simulated order is FBR.
        if method != "FBB" {
            for ord in &st.orders {
                let items: Vec<Value> = ord
                    .items
                    .iter()
                    .filter(|i| match status {
                        "OPEN" => i.open() > 0,
                        "SHIPPED" => i.shipped > 0,
                        _ => true,
                    })
                    .filter(|i| {
                        interval.is_none_or(|m| now - i.changed <= chrono::Duration::minutes(m))
                    })
                    .filter(|i| change_date.is_none_or(|d| i.changed.date_naive() == d))
                    .filter_map(|i| {
                        let ean = st.offer(&i.offer_id).map(|o| o.ean.clone())?;
                        Some(json!({
                            "orderItemId": i.id,
                            "ean": ean,
                            "fulfilmentMethod": "FBR",
                            "fulfilmentStatus": if i.open() > 0 { "OPEN" } else { "HANDLED" },
                            "quantity": i.quantity,
                            "quantityShipped": i.shipped,
                            "quantityCancelled": i.cancelled,
                            "cancellationRequest": i.cancellation_request,
                            "latestChangedDateTime": ts(i.changed),
                        }))
                    })
                    .collect();
                if !items.is_empty() {
                    out.push(json!({
                        "orderId": ord.id,
                        "orderPlacedDateTime": ts(ord.placed),
                        "orderItems": items,
                    }));
                }
            }
        }
        let page_items: Vec<Value> = out
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        let body = if page_items.is_empty() && self.config.empty_orders_as_empty_object {
            json!({})
        } else {
            json!({"orders": page_items})
        };
        vnd_json(StatusCode::OK, MEDIA_V10, &body)
    }

    pub(super) fn get_order(&self, ctx: &Ctx, order_id: &str) -> Response {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let Some(ord) = st.orders.iter().find(|o| o.id == order_id) else {
            return not_found(ctx.instance());
        };
        let latest = (ord.placed + chrono::Duration::days(2))
            .format("%Y-%m-%d")
            .to_string();
        let expiry = (ord.placed + chrono::Duration::days(5))
            .format("%Y-%m-%d")
            .to_string();
        let items: Vec<Value> = ord
            .items
            .iter()
            .map(|i| {
                let (ean, reference) = st
                    .offer(&i.offer_id)
                    .map(|o| (o.ean.clone(), o.reference.clone()))
                    .unwrap_or_default();
                let total = round2(i.unit_price * i.quantity as f64);
                json!({
                    "orderItemId": i.id,
                    "cancellationRequest": i.cancellation_request,
                    "fulfilment": {
                        "method": "FBR",
                        "distributionParty": "RETAILER",
                        "latestDeliveryDate": latest,
                        "expiryDate": expiry,
                        "timeFrameType": "REGULAR",
                    },
                    "offer": {"offerId": i.offer_id, "reference": reference},
                    "product": {"ean": ean, "title": format!("Product {reference}")},
                    "quantity": i.quantity,
                    "quantityShipped": i.shipped,
                    "quantityCancelled": i.cancelled,
                    "unitPrice": i.unit_price,
                    "totalPrice": total,
                    "discounts": [],
                    "commission": round2(total * 0.15),
                    "additionalServices": [],
                    "latestChangedDateTime": ts(i.changed),
                })
            })
            .collect();
        let address = json!({
            "salutation": "UNKNOWN",
            "firstName": "Billie",
            "surname": "Jansen",
            "streetName": "Dorpstraat",
            "houseNumber": "1",
            "zipCode": "1111ZZ",
            "city": "Utrecht",
            "countryCode": "NL",
            "email": "billie@verkopen.bol.com",
            "language": "nl",
        });
        let mut billing = address.clone();
        if let Some(b) = billing.as_object_mut() {
            b.remove("language");
        }
        let v = json!({
            "orderId": ord.id,
            "pickupPoint": false,
            "orderPlacedDateTime": ts(ord.placed),
            "shipmentDetails": address,
            "billingDetails": billing,
            "orderItems": items,
        });
        vnd_json(StatusCode::OK, MEDIA_V10, &v)
    }

    /// `PUT /retailer/orders/cancellation`: exactly one item, a known reason code.
    pub(super) fn put_cancellation(&self, ctx: &Ctx) -> Response {
        const REASONS: &[&str] = &[
            "OUT_OF_STOCK",
            "REQUESTED_BY_CUSTOMER",
            "BAD_CONDITION",
            "HIGHER_SHIPCOST",
            "INCORRECT_PRICE",
            "NOT_AVAIL_IN_TIME",
            "NO_BOL_GUARANTEE",
            "ORDERED_TWICE",
            "RETAIN_ITEM",
            "TECH_ISSUE",
            "UNFINDABLE_ITEM",
            "OTHER",
        ];
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let items = body.get("orderItems").and_then(Value::as_array);
        let Some([item]) = items.map(Vec::as_slice) else {
            return bad_request(
                ctx.instance(),
                vec![("orderItems".into(), "Size must be between 1 and 1.".into())],
            );
        };
        let mut violations = Vec::new();
        let item_id = match item.get("orderItemId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                violations.push((
                    "orderItems[0].orderItemId".into(),
                    "Must not be empty.".into(),
                ));
                String::new()
            }
        };
        match item.get("reasonCode").and_then(Value::as_str) {
            Some(r) if REASONS.contains(&r) => {}
            other => violations.push((
                "orderItems[0].reasonCode".into(),
                format!(
                    "Request contains invalid value(s): '{}', allowed values: {}.",
                    other.unwrap_or(""),
                    REASONS.join(", ")
                ),
            )),
        }
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let v = self.create_process(
            &mut st,
            NewProcess {
                entity_id: item_id.clone(),
                event_type: "CANCEL_ORDER",
                description: format!("Cancel order item {item_id}."),
                outcome: ProcessOutcome::Success,
                failure: String::new(),
                action: Action::Cancel {
                    item_id: item_id.clone(),
                },
            },
        );
        vnd_json(StatusCode::ACCEPTED, MEDIA_V10, &v)
    }
}
