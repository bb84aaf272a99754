//! ORDER_CHANGE notifications, the Amazon-specific `/_sim/amazon` endpoints and the simulated
//! customers behind the shared `/_sim` endpoints (notification schema:
//! `specs/amazon/OrderChangeNotification.json`).

use super::*;

impl Amazon {
    pub(super) fn notify(&self, o: &Order, reason: &str) {
        let Some(url) = self.config.notification_url.clone() else {
            return;
        };
        let t = ts(&o.updated);
        let shipped = o.status == "SHIPPED";
        let items: Vec<Value> = o
            .items
            .iter()
            .map(|i| {
                json!({
                    "OrderItemId": i.id,
                    "SellerSKU": i.sku,
                    "SupplySourceId": null,
                    "OrderItemStatus": if shipped { "Shipped" } else { "Unshipped" },
                    "Quantity": i.quantity,
                    "QuantityShipped": if shipped { i.quantity } else { 0 },
                    "IsBuyerRequestedCancel": o.status == "CANCELLED",
                })
            })
            .collect();
        let total: i64 = o.items.iter().map(|i| i.quantity).sum();
        let body = json!({
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": t,
            "Payload": {"OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": self.config.seller_id,
                "AmazonOrderId": o.id,
                "OrderChangeType": "OrderStatusChange",
                "OrderChangeTrigger": {"TimeOfOrderChange": t, "ChangeReason": reason},
                "Summary": {
                    "MarketplaceId": self.config.marketplace_id,
                    "OrderStatus": legacy_status(o.status),
                    "PurchaseDate": ts(&o.created),
                    "DestinationPostalCode": "1011AB",
                    "FulfillmentType": "MFN",
                    "OrderType": "StandardOrder",
                    "NumberOfItemsShipped": if shipped { total } else { 0 },
                    "NumberOfItemsUnshipped": if shipped || o.status == "CANCELLED" { 0 } else { total },
                    "OrderItems": items,
                },
            }},
            "NotificationMetadata": {
                "ApplicationId": self.config.application_id,
                "SubscriptionId": self.config.subscription_id,
                "PublishTime": ts(&self.now()),
                "NotificationId": self.core.uuid(),
            },
        });
        let body = body.to_string().into_bytes();
        let sig = hmac_sha256_base64(self.config.notification_secret.as_bytes(), &body);
        self.core.send_webhook(
            Delivery {
                url,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("X-Stockd-Signature".into(), sig),
                ],
                body,
            },
            RetryPolicy {
                delays: self.config.notification_retry_delays.clone(),
                max_success_status: 299,
                timeout: self.config.notification_timeout,
            },
            None,
        );
    }

    pub(super) fn digits(&self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.core.rand_u64() % 10) as u8))
            .collect()
    }

    pub(super) fn ship(&self, id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let o = st
            .orders
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or_else(|| SimError::UnknownOrder(id.to_string()))?;
        if o.status != "UNSHIPPED" && o.status != "PENDING" {
            return Err(SimError::InvalidState(format!("order is {}", o.status)));
        }
        o.status = "SHIPPED";
        o.updated = self.now();
        let o = o.clone();
        drop(st);
        self.notify(&o, "Order shipped");
        Ok(())
    }
}

pub(super) async fn sim_tokens(State(sim): State<Sim>) -> Response {
    let st = lock(&sim.state);
    let active = st.tokens.values().filter(|e| **e > Instant::now()).count();
    json_response(
        StatusCode::OK,
        &json!({"issued": st.tokens_issued, "active": active}),
    )
}

/// `{"outcomes": ["FATAL", "CANCELLED", "DONE"]}`: the next feeds to finish end this way.
pub(super) async fn sim_feed_outcomes(State(sim): State<Sim>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(list) = v.get("outcomes").and_then(Value::as_array) else {
        return SimError::BadRequest("expected {\"outcomes\": [...]}".into()).to_response_pub();
    };
    let mut parsed = Vec::new();
    for x in list {
        parsed.push(match x.as_str() {
            Some("FATAL") => FeedStatus::Fatal,
            Some("CANCELLED") => FeedStatus::Cancelled,
            Some("DONE") => FeedStatus::Done,
            _ => {
                return SimError::BadRequest("outcomes are FATAL, CANCELLED or DONE".into())
                    .to_response_pub()
            }
        });
    }
    let mut st = lock(&sim.state);
    st.feed_outcomes.extend(parsed);
    json_response(StatusCode::OK, &json!({"queued": st.feed_outcomes.len()}))
}

pub(super) async fn sim_ship(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.ship(&id) {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"order_id": id, "status": "shipped"}),
        ),
        Err(e) => e.to_response_pub(),
    }
}

pub(super) trait ToResponsePub {
    fn to_response_pub(&self) -> Response;
}

impl ToResponsePub for SimError {
    /// The `/_sim` error shape of the shared endpoints.
    fn to_response_pub(&self) -> Response {
        let (status, code) = match self {
            SimError::NotAvailable => (StatusCode::CONFLICT, "not_available"),
            SimError::UnknownSku(_) => (StatusCode::NOT_FOUND, "unknown_sku"),
            SimError::UnknownOrder(_) => (StatusCode::NOT_FOUND, "unknown_order"),
            SimError::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
            SimError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        json_response(status, &json!({"error": code, "message": self.to_string()}))
    }
}

impl SimBackend for Amazon {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let st = lock(&self.state);
        st.listings.values().map(|l| self.listing_view(l)).collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        for it in items {
            let t = self.now();
            let asin = format!("B0{}", self.digits(8));
            let l = st
                .listings
                .entry(it.sku.clone())
                .or_insert_with(|| Listing {
                    sku: it.sku.clone(),
                    asin,
                    product_type: PRODUCT_TYPE.into(),
                    fa: None,
                    attrs: Map::new(),
                    created: t,
                    updated: t,
                    applied_seq: 0,
                });
            l.fa = Some(Availability {
                quantity: it.quantity.max(0),
                lead_time: None,
                restock_date: None,
            });
            l.updated = t;
            out.push(self.listing_view(l));
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        for (sku, qty) in lines {
            if *qty <= 0 {
                return Err(SimError::BadRequest("quantity must be > 0".into()));
            }
            let l = st
                .listings
                .get(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            let wanted: i64 = lines
                .iter()
                .filter(|(s, _)| s == sku)
                .map(|(_, q)| *q)
                .sum();
            if l.quantity() < wanted {
                return Err(SimError::NotAvailable);
            }
        }
        let t = self.now();
        let mut items = Vec::new();
        for (sku, qty) in lines {
            if let Some(l) = st.listings.get_mut(sku) {
                if let Some(fa) = l.fa.as_mut() {
                    fa.quantity -= qty;
                }
                l.updated = t;
                items.push(OrderItem {
                    id: self.digits(14),
                    sku: sku.clone(),
                    asin: l.asin.clone(),
                    quantity: *qty,
                });
            }
        }
        let id = format!("{}-{}-{}", self.digits(3), self.digits(7), self.digits(7));
        // MFN orders are taken as paid at once: created straight in UNSHIPPED (choice).
        let o = Order {
            id: id.clone(),
            created: t,
            updated: t,
            status: "UNSHIPPED",
            items,
            refunded: false,
        };
        st.orders.push(o.clone());
        drop(st);
        // ChangeReason wording is UNCONFIRMED.
        self.notify(&o, "Order placed");
        Ok(json!({"order_id": id}))
    }

    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let idx = st
            .orders
            .iter()
            .position(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        if !matches!(st.orders[idx].status, "PENDING" | "UNSHIPPED") {
            return Err(SimError::InvalidState(format!(
                "order is {}",
                st.orders[idx].status
            )));
        }
        let t = self.now();
        st.orders[idx].status = "CANCELLED";
        st.orders[idx].updated = t;
        let o = st.orders[idx].clone();
        for i in &o.items {
            if let Some(l) = st.listings.get_mut(&i.sku) {
                if let Some(fa) = l.fa.as_mut() {
                    fa.quantity += i.quantity;
                }
                l.updated = t;
            }
        }
        drop(st);
        self.notify(&o, "Buyer Requested Cancel");
        Ok(())
    }

    /// Refunds carry no ORDER_CHANGE (they are no fulfillment status change); the restock is
    /// what the seller would do by hand.
    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let idx = st
            .orders
            .iter()
            .position(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        let o = &st.orders[idx];
        if o.status == "CANCELLED" || o.refunded {
            return Err(SimError::InvalidState(format!(
                "order is {}{}",
                o.status,
                if o.refunded { " and refunded" } else { "" }
            )));
        }
        let t = self.now();
        st.orders[idx].refunded = true;
        st.orders[idx].updated = t;
        let items = st.orders[idx].items.clone();
        if restock {
            for i in &items {
                if let Some(fa) = st.listings.get_mut(&i.sku).and_then(|l| l.fa.as_mut()) {
                    fa.quantity += i.quantity;
                }
            }
        }
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        let l = st
            .listings
            .get_mut(sku)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let fa = l.fa.get_or_insert(Availability {
            quantity: 0,
            lead_time: None,
            restock_date: None,
        });
        fa.quantity = quantity.max(0);
        l.updated = self.now();
        Ok(self.listing_view(l))
    }
}
