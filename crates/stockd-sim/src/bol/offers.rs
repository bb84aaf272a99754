//! Offers: the v10 stock PUT (asynchronous, answered with a process status), and the v10/v11
//! offer GET and the synchronous v11 PATCH.

use super::http::{bad_request, not_found, vnd_json, Ctx};
use super::state::{ts, Action, Bol, NewProcess};
use super::*;

impl Bol {
    pub(super) fn put_stock(&self, ctx: &Ctx, offer_id: &str) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let mut violations = Vec::new();
        // UpdateOfferStockRequest: both required, amount int32 in 0..=999.
        let amount = match body.get("amount") {
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                let a = n.as_i64().unwrap_or(-1);
                if a < 0 {
                    violations.push((
                        "amount".into(),
                        "Must be greater than or equal to 0.".into(),
                    ));
                } else if a > 999 {
                    violations.push(("amount".into(), "Must be less than or equal to 999.".into()));
                }
                a
            }
            Some(_) => {
                violations.push(("amount".into(), "Must be an integer.".into()));
                0
            }
            None => {
                violations.push(("amount".into(), "Must not be null.".into()));
                0
            }
        };
        let managed = match body.get("managedByRetailer") {
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                violations.push(("managedByRetailer".into(), "Must be a boolean.".into()));
                false
            }
            None => {
                violations.push(("managedByRetailer".into(), "Must not be null.".into()));
                false
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let sku = st.offer(offer_id).map(|o| o.reference.clone());
        let (outcome, failure, action) = match &sku {
            Some(_) => {
                let (o, f) = self.outcome_for(&st, sku.as_deref());
                (
                    o,
                    f,
                    Action::Stock {
                        offer_id: offer_id.to_string(),
                        amount,
                        managed,
                    },
                )
            }
            // The spec lists only 202 and 400 here: an unknown offer fails in the process.
            None => (
                ProcessOutcome::Failure,
                format!("Offer with id '{offer_id}' does not exist."),
                Action::None,
            ),
        };
        // entityId = offer id is UNCONFIRMED.
        let v = self.create_process(
            &mut st,
            NewProcess {
                entity_id: offer_id.to_string(),
                event_type: "UPDATE_OFFER_STOCK",
                description: format!("Update stock for offer with id {offer_id}."),
                outcome,
                failure,
                action,
            },
        );
        vnd_json(StatusCode::ACCEPTED, MEDIA_V10, &v)
    }

    pub(super) fn get_offer(&self, ctx: &Ctx, offer_id: &str, media: &str) -> Response {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let Some(o) = st.offer(offer_id) else {
            return not_found(ctx.instance());
        };
        let corrected = st.corrected(o);
        let stock = json!({
            "amount": o.amount,
            "correctedStock": corrected,
            "managedByRetailer": o.managed_by_retailer,
        });
        let pricing = json!({"bundlePrices": [{"quantity": 1, "unitPrice": o.unit_price}]});
        let for_sale = corrected > 0 && !o.on_hold;
        let v = if media == MEDIA_V11 {
            json!({
                "offerId": o.offer_id,
                "ean": o.ean,
                "lastModifiedDateTime": ts(o.modified),
                "reference": o.reference,
                "onHoldByRetailer": o.on_hold,
                "stock": stock,
                "countryAvailabilities": [{"countryCode": "NL", "forSale": for_sale}],
                "condition": {"category": "NEW"},
                "product": {"bolProductId": format!("92{}", &o.ean[..12])},
                "pricing": pricing,
                "fulfilment": {
                    "method": "FBR",
                    "schedule": "MY_DELIVERY_PROMISE",
                    "deliveryPromise": {"minimumDaysToCustomer": 1, "maximumDaysToCustomer": 2},
                },
            })
        } else {
            let reasons: Vec<Value> = if for_sale {
                vec![]
            } else {
                // Code/wording UNCONFIRMED.
                vec![json!({"code": "4000", "description": "The offer has no stock."})]
            };
            json!({
                "offerId": o.offer_id,
                "ean": o.ean,
                "reference": o.reference,
                "onHoldByRetailer": o.on_hold,
                "unknownProductTitle": format!("Product {}", o.reference),
                "pricing": pricing,
                "stock": stock,
                "fulfilment": {"method": "FBR", "deliveryCode": "1-2d"},
                "store": {"productTitle": format!("Product {}", o.reference), "visible": [{"countryCode": "NL"}]},
                "condition": {"name": "NEW", "category": "NEW", "comment": ""},
                "notPublishableReasons": reasons,
            })
        };
        vnd_json(StatusCode::OK, media, &v)
    }

    /// v11 PATCH: synchronous, 204. Server-side stock bounds are UNCONFIRMED, so any
    /// int32 ≥ 0 is accepted.
    pub(super) fn patch_offer(&self, ctx: &Ctx, offer_id: &str) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let mut violations: Vec<(String, String)> = Vec::new();
        let mut new_amount = None;
        let mut new_managed = None;
        if let Some(stock) = body.get("stock") {
            match stock {
                Value::Object(s) => {
                    match s.get("amount") {
                        None | Some(Value::Null) => {}
                        Some(Value::Number(n))
                            if n.as_i64()
                                .is_some_and(|a| (0..=i64::from(i32::MAX)).contains(&a)) =>
                        {
                            new_amount = n.as_i64();
                        }
                        Some(_) => violations.push((
                            "stock.amount".into(),
                            "Must be a non-negative integer.".into(),
                        )),
                    }
                    match s.get("managedByRetailer") {
                        None | Some(Value::Null) => {}
                        Some(Value::Bool(b)) => new_managed = Some(*b),
                        Some(_) => violations.push((
                            "stock.managedByRetailer".into(),
                            "Must be a boolean.".into(),
                        )),
                    }
                }
                _ => violations.push(("stock".into(), "Must be an object.".into())),
            }
        }
        let reference = match body.get("reference") {
            None => None,
            Some(Value::String(r)) if r.chars().count() <= 100 => Some(r.clone()),
            Some(_) => {
                violations.push((
                    "reference".into(),
                    "Must be a string of at most 100 characters.".into(),
                ));
                None
            }
        };
        let on_hold = match body.get("onHoldByRetailer") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                violations.push(("onHoldByRetailer".into(), "Must be a boolean.".into()));
                None
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let Some(sku) = st.offer(offer_id).map(|o| o.reference.clone()) else {
            return not_found(ctx.instance());
        };
        let stock_change = new_amount.is_some() || new_managed.is_some();
        if stock_change {
            let (outcome, failure) = self.outcome_for(&st, Some(&sku));
            if outcome == ProcessOutcome::Failure {
                // v11 error bodies are in the missing common/responses.yaml: UNCONFIRMED.
                return bad_request(ctx.instance(), vec![("stock".into(), failure)]);
            }
        }
        let seq = st.next_seq();
        let Some(o) = st.offer_mut(offer_id) else {
            return not_found(ctx.instance());
        };
        if let Some(a) = new_amount {
            o.amount = a;
        }
        if let Some(m) = new_managed {
            o.managed_by_retailer = m;
        }
        if stock_change {
            o.updated_seq = seq;
            Counters::add(&self.core.counters.updates_applied, 1);
        }
        if let Some(r) = reference {
            o.reference = r;
        }
        if let Some(h) = on_hold {
            o.on_hold = h;
        }
        o.modified = self.now();
        StatusCode::NO_CONTENT.into_response()
    }
}
