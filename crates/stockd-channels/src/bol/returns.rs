//! Customer returns on bol.com become `Restocked` order changes.
//!
//! bol registers a return (one `returnId`, one or more items each with its
//! own `rmaId`) when a customer or customer service announces it
//! (<https://api.bol.com/retailer/public/Retailer-API/v10/functional/retailer-api/returns.html>).
//! The connector lists the unhandled FBR returns,
//! `GET /retailer/returns?handled=false&fulfilment-method=FBR` paged by 50
//! (`ReturnsResponse` / `ReducedReturn` / `ReducedReturnItem` in
//! `specs/bol/retailer-v10.json`), and turns each item into a `Restocked`
//! change of `expectedQuantity` units for its order line, keyed
//! `return:{rmaId}`: the same item listed again on the next poll applies
//! once.
//!
//! A listed item names its order and EAN but not its order item
//! (`ReducedReturnItem` has no `orderItemId`), so the order's detail is read
//! once per poll and the first FBR item with that EAN is the line.

use super::{json_of, path_segment, string_value, Bol, Endpoint, Media};
use crate::{ChannelError, OrderChange, OrderChangeKind, OrderLineRef};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Returns per page of `GET /retailer/returns` (`specs/bol/retailer-v10.json`).
const RETURNS_PAGE_SIZE: usize = 50;
/// Guard against a server whose pages never end.
const MAX_RETURN_PAGES: u32 = 200;

/// One registered, unhandled return item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReturnedItem {
    pub(super) rma_id: String,
    pub(super) order_id: String,
    pub(super) ean: String,
    pub(super) expected_quantity: i64,
}

/// The unhandled FBR items of one `ReturnsResponse` page, and how many
/// returns the page held (a full page is followed by another).
pub(super) fn returned_items(page: &Value) -> (Vec<ReturnedItem>, usize) {
    let returns = page
        .get("returns")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut items = Vec::new();
    for ret in returns {
        let fbr = ret
            .get("fulfilmentMethod")
            .and_then(Value::as_str)
            .is_none_or(|m| m.eq_ignore_ascii_case("FBR"));
        if !fbr {
            continue;
        }
        for item in ret
            .get("returnItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // An item the retailer already handled was seen while it was
            // unhandled (or is of no concern any more).
            if item.get("handled").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let (Some(rma_id), Some(order_id), Some(ean)) = (
                string_value(item.get("rmaId")),
                string_value(item.get("orderId")),
                string_value(item.get("ean")),
            ) else {
                continue;
            };
            let expected_quantity = super::int_value(item.get("expectedQuantity")).unwrap_or(0);
            if expected_quantity <= 0 {
                continue;
            }
            items.push(ReturnedItem {
                rma_id,
                order_id,
                ean,
                expected_quantity,
            });
        }
    }
    (items, returns.len())
}

/// The order line a returned item belongs to, from the order's detail
/// (`Order` in `specs/bol/retailer-v10.json`): the first FBR item whose
/// product has the returned EAN.
pub(super) fn returned_line(detail: &Value, returned: &ReturnedItem) -> Option<OrderLineRef> {
    let item = detail
        .get("orderItems")
        .and_then(Value::as_array)?
        .iter()
        .find(|item| {
            let ean = string_value(item.get("product").and_then(|p| p.get("ean")))
                .or_else(|| string_value(item.get("ean")));
            let fbr = item
                .get("fulfilment")
                .and_then(|f| f.get("method"))
                .and_then(Value::as_str)
                .is_none_or(|m| m.eq_ignore_ascii_case("FBR"));
            fbr && ean.as_deref() == Some(returned.ean.as_str())
        })?;
    let line_id = string_value(item.get("orderItemId"))?;
    let offer = item.get("offer");
    let mut keys = Vec::new();
    if let Some(id) = string_value(offer.and_then(|o| o.get("offerId"))) {
        keys.push(("offer_id".to_owned(), id));
    }
    keys.push(("ean".to_owned(), returned.ean.clone()));
    if let Some(reference) = string_value(offer.and_then(|o| o.get("reference"))) {
        keys.push(("sku".to_owned(), reference));
    }
    Some(OrderLineRef {
        line_id,
        keys,
        qty: returned.expected_quantity,
    })
}

impl Bol {
    /// Every unhandled FBR return item as a `Restocked` change of its order
    /// line, dedup key `return:{rmaId}`. An item whose order or EAN cannot
    /// be found is skipped (logged): it has no line stockd could return.
    pub(super) async fn poll_returns(&self) -> Result<Vec<OrderChange>, ChannelError> {
        let mut returned = Vec::new();
        for page in 1..=MAX_RETURN_PAGES {
            let url = format!(
                "{}/retailer/returns?page={page}&handled=false&fulfilment-method=FBR",
                self.api()
            );
            let response = self
                .call(
                    Endpoint::ReturnsList,
                    http::Method::GET,
                    &url,
                    Media::V10,
                    None,
                    "return list",
                )
                .await?;
            // An empty page may be `{}`, as with orders (UNCONFIRMED).
            let value = if response.body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                json_of(&response, "return list")?
            };
            let (items, returns) = returned_items(&value);
            returned.extend(items);
            if returns < RETURNS_PAGE_SIZE {
                break;
            }
        }

        let mut details: HashMap<String, Option<Value>> = HashMap::new();
        let mut changes = Vec::new();
        for item in returned {
            if !details.contains_key(&item.order_id) {
                let detail = self.order_detail_value(&item.order_id).await?;
                details.insert(item.order_id.clone(), detail);
            }
            let line = details
                .get(&item.order_id)
                .and_then(Option::as_ref)
                .and_then(|detail| returned_line(detail, &item));
            let Some(line) = line else {
                tracing::warn!(rma_id = %item.rma_id, order = %item.order_id, ean = %item.ean,
                    "bol return names no order line; skipped");
                continue;
            };
            changes.push(OrderChange {
                dedup_key: format!("return:{}", item.rma_id),
                order_id: item.order_id,
                kind: OrderChangeKind::Restocked,
                lines: vec![line],
            });
        }
        Ok(changes)
    }

    /// `GET /retailer/orders/{order-id}`; `None` when bol no longer has it.
    async fn order_detail_value(&self, order_id: &str) -> Result<Option<Value>, ChannelError> {
        let url = format!("{}/retailer/orders/{}", self.api(), path_segment(order_id));
        match self
            .call(
                Endpoint::OrderGet,
                http::Method::GET,
                &url,
                Media::V10,
                None,
                &format!("order {order_id}"),
            )
            .await
        {
            Ok(response) => json_of(&response, "order detail").map(Some),
            Err(error) if error.status == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Value {
        json!({"returns": [
            {"returnId": "1", "registrationDateTime": "2026-01-01T10:00:00+01:00",
             "fulfilmentMethod": "FBR", "returnItems": [
                {"rmaId": "31234567", "orderId": "A1", "ean": "8712345678906",
                 "expectedQuantity": 2, "handled": false},
                {"rmaId": "31234568", "orderId": "A1", "ean": "8712345678913",
                 "expectedQuantity": 1, "handled": true}]},
            {"returnId": "2", "registrationDateTime": "2026-01-01T11:00:00+01:00",
             "fulfilmentMethod": "FBB", "returnItems": [
                {"rmaId": "31234569", "orderId": "A2", "ean": "8712345678906",
                 "expectedQuantity": 1, "handled": false}]}]})
    }

    #[test]
    fn only_unhandled_fbr_items_are_returned() {
        let (items, returns) = returned_items(&page());
        assert_eq!(returns, 2);
        assert_eq!(
            items,
            vec![ReturnedItem {
                rma_id: "31234567".into(),
                order_id: "A1".into(),
                ean: "8712345678906".into(),
                expected_quantity: 2,
            }]
        );
        assert_eq!(returned_items(&json!({})), (Vec::new(), 0));
    }

    #[test]
    fn the_line_is_the_order_item_with_the_returned_ean() {
        let detail = json!({"orderId": "A1", "orderItems": [
            {"orderItemId": "10", "product": {"ean": "8712345678913"},
             "offer": {"offerId": "o-10", "reference": "SKU-10"}},
            {"orderItemId": "11", "product": {"ean": "8712345678906"},
             "offer": {"offerId": "o-11", "reference": "SKU-11"}}]});
        let (items, _) = returned_items(&page());
        let line = returned_line(&detail, &items[0]).expect("line");
        assert_eq!(line.line_id, "11");
        assert_eq!(line.qty, 2);
        assert_eq!(
            line.keys,
            vec![
                ("offer_id".to_owned(), "o-11".to_owned()),
                ("ean".to_owned(), "8712345678906".to_owned()),
                ("sku".to_owned(), "SKU-11".to_owned()),
            ]
        );
        let other = ReturnedItem {
            ean: "0000000000000".into(),
            ..items[0].clone()
        };
        assert_eq!(returned_line(&detail, &other), None);
    }
}
