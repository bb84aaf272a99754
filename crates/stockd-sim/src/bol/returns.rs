//! Customer returns (FBR): the operator ships an order and registers a customer's return of
//! shipped units; `GET /retailer/returns` lists them (`ReturnsResponse` / `ReducedReturn` /
//! `ReducedReturnItem` in `specs/bol/retailer-v10.json`, 50 returns a page, unhandled ones
//! oldest first). Functional description:
//! <https://api.bol.com/retailer/public/Retailer-API/v10/functional/retailer-api/returns.html>.
//! Returns are never handled here (no `PUT /retailer/returns/{rma-id}`), so every registered
//! item stays in the `handled=false` list.

use super::http::{bad_request, vnd_json, Ctx};
use super::state::{ts, Bol};
use super::*;

/// One registered return: a `returnId` with one item (`rmaId`) per order item returned.
pub(super) struct Return {
    pub(super) return_id: String,
    pub(super) registered: DateTime<Utc>,
    pub(super) rma_id: String,
    pub(super) order_id: String,
    pub(super) order_item_id: String,
    pub(super) quantity: i64,
}

impl Bol {
    /// `GET /retailer/returns`: `page`, `handled`, `fulfilment-method` (FBR, FBB).
    pub(super) fn list_returns(&self, ctx: &Ctx) -> Response {
        let mut violations = Vec::new();
        let page = match ctx.q("page").map(str::parse::<usize>) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => {
                violations.push(("page".into(), "Must be greater than or equal to 1.".into()));
                1
            }
        };
        let handled = match ctx.q("handled") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => {
                violations.push((
                    "handled".into(),
                    format!(
                        "Request contains invalid value(s): '{v}', allowed values: true, false."
                    ),
                ));
                None
            }
        };
        let method = ctx.q("fulfilment-method").unwrap_or("FBR");
        if !["FBR", "FBB"].contains(&method) {
            violations.push((
                "fulfilment-method".into(),
                format!("Request contains invalid value(s): '{method}', allowed values: FBR, FBB."),
            ));
        }
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let st = lock(&self.state);
        // Every simulated return is FBR and unhandled.
        let listed = method == "FBR" && handled != Some(true);
        let returns: Vec<Value> = st
            .returns
            .iter()
            .filter(|_| listed)
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|r| {
                let ean = st
                    .orders
                    .iter()
                    .find(|o| o.id == r.order_id)
                    .and_then(|o| o.items.iter().find(|i| i.id == r.order_item_id))
                    .and_then(|i| st.offer(&i.offer_id))
                    .map(|o| o.ean.clone())
                    .unwrap_or_default();
                json!({
                    "returnId": r.return_id,
                    "registrationDateTime": ts(r.registered),
                    "fulfilmentMethod": "FBR",
                    "returnItems": [{
                        "rmaId": r.rma_id,
                        "orderId": r.order_id,
                        "ean": ean,
                        "expectedQuantity": r.quantity,
                        "returnReason": {
                            "mainReason": "Product voldoet niet aan de verwachting",
                            "detailedReason": "Anders, namelijk:",
                            "customerComments": "",
                        },
                        "handled": false,
                        "processingResults": [],
                    }],
                })
            })
            .collect();
        vnd_json(StatusCode::OK, MEDIA_V10, &json!({"returns": returns}))
    }

    /// The operator ships every open unit of an order.
    pub(super) fn ship_order(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let ord = st
            .orders
            .iter_mut()
            .find(|o| o.id == order_id)
            .ok_or_else(|| SimError::UnknownOrder(order_id.to_string()))?;
        if ord.items.iter().all(|i| i.open() == 0) {
            return Err(SimError::InvalidState("order has no open items".into()));
        }
        let now = self.now();
        for i in ord.items.iter_mut().filter(|i| i.open() > 0) {
            i.shipped += i.open();
            i.changed = now;
        }
        Ok(())
    }

    /// A customer registers the return of `quantity` shipped units of an order item; at most
    /// what was shipped and not returned yet. Returns the new item's `rmaId`.
    pub(super) fn register_return(
        &self,
        order_item_id: &str,
        quantity: i64,
    ) -> Result<String, SimError> {
        if quantity <= 0 {
            return Err(SimError::BadRequest("quantity must be positive".into()));
        }
        let mut st = lock(&self.state);
        let (order_id, shipped) = st
            .orders
            .iter()
            .find_map(|o| {
                let i = o.items.iter().find(|i| i.id == order_item_id)?;
                Some((o.id.clone(), i.shipped))
            })
            .ok_or_else(|| SimError::UnknownOrder(order_item_id.to_string()))?;
        let returned: i64 = st
            .returns
            .iter()
            .filter(|r| r.order_item_id == order_item_id)
            .map(|r| r.quantity)
            .sum();
        if quantity > shipped - returned {
            return Err(SimError::InvalidState(format!(
                "only {} shipped units of order item {order_item_id} can be returned",
                shipped - returned
            )));
        }
        st.return_next += 1;
        let return_id = st.return_next.to_string();
        let rma_id = (st.return_next + 30_000_000).to_string();
        st.returns.push(Return {
            return_id,
            registered: self.now(),
            rma_id: rma_id.clone(),
            order_id,
            order_item_id: order_item_id.to_string(),
            quantity,
        });
        Ok(rma_id)
    }
}

/// Ship every open unit of `order_id` on a running bol simulator.
pub fn ship_order(sim: &RunningSim, order_id: &str) -> Result<(), SimError> {
    let bol = sim
        .channel::<Bol>()
        .ok_or_else(|| SimError::BadRequest("not a bol simulator".into()))?;
    bol.ship_order(order_id)
}

/// Register a customer's return of `quantity` shipped units of `order_item_id` on a running
/// bol simulator; the new item's `rmaId`.
pub fn register_return(
    sim: &RunningSim,
    order_item_id: &str,
    quantity: i64,
) -> Result<String, SimError> {
    let bol = sim
        .channel::<Bol>()
        .ok_or_else(|| SimError::BadRequest("not a bol simulator".into()))?;
    bol.register_return(order_item_id, quantity)
}

#[derive(Deserialize)]
pub(super) struct ReturnBody {
    order_item_id: String,
    quantity: i64,
}

/// `POST /_sim/bol/orders/{order_id}/ship`.
pub(super) async fn op_ship(
    axum::extract::State(sim): axum::extract::State<Arc<Bol>>,
    axum::extract::Path(order_id): axum::extract::Path<String>,
) -> Response {
    match sim.ship_order(&order_id) {
        Ok(()) => axum::Json(json!({"order_id": order_id, "status": "shipped"})).into_response(),
        Err(e) => e.to_response(),
    }
}

/// `POST /_sim/bol/returns` with `{"order_item_id": "…", "quantity": n}`.
pub(super) async fn op_register_return(
    axum::extract::State(sim): axum::extract::State<Arc<Bol>>,
    body: axum::body::Bytes,
) -> Response {
    let body: ReturnBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return SimError::BadRequest(e.to_string()).to_response(),
    };
    match sim.register_return(&body.order_item_id, body.quantity) {
        Ok(rma_id) => axum::Json(json!({"rma_id": rma_id})).into_response(),
        Err(e) => e.to_response(),
    }
}
