//! Inventories sub-API v1: local inventories insert, list and delete
//! (<https://developers.google.com/merchant/api/reference/rest/inventories_v1/accounts.products.localInventories>).

use super::*;

impl Gmc {
    pub(super) fn local_json(&self, key: &str, store: &str, attrs: Value) -> Value {
        let a = self.config.account_id;
        json!({
            "name": format!("accounts/{a}/products/{key}/localInventories/{store}"),
            "account": a.to_string(),
            "storeCode": store,
            "localInventoryAttributes": attrs,
        })
    }

    pub(super) fn insert_local(&self, id: &str, body: Value) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let mut body = body;
        if let Err(e) = normalize_int64(&mut body, "") {
            return invalid(&e);
        }
        let Value::Object(li) = body else {
            return invalid("The request body must be a LocalInventory object.");
        };
        let store = match li.get("storeCode").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return invalid("Required field: storeCode"),
        };
        let mut attrs = match li.get("localInventoryAttributes") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return invalid("localInventoryAttributes must be an object."),
        };
        if let Err(e) = check_local_attributes(&mut attrs) {
            return invalid(&e);
        }
        if self.core.rejects_sku(&pid.offer_id) {
            return invalid(&format!(
                "Offer {} was rejected: invalid product data.",
                pid.offer_id
            ));
        }
        let key = pid.key();
        let now = Instant::now();
        let out = self.local_json(&key, &store, Value::Object(attrs));
        let mut st = lock(&self.state);
        // Local inventories only for products that exist.
        let Some(e) = st.products.get_mut(&key).filter(|e| e.input.is_some()) else {
            return not_found();
        };
        e.local
            .entry(store)
            .or_default()
            .push(now + self.config.inventory_delay, Some(out.clone()));
        Counters::add(&self.core.counters.updates_applied, 1);
        Json(out).into_response()
    }

    pub(super) fn list_local(&self, id: &str, query: &[(String, String)]) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let (size, offset) = match paging(query, 25_000, 25_000) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&pid.key()) else {
            return not_found();
        };
        let mut all = Vec::new();
        for d in e.local.values_mut() {
            d.settle(now);
            if let Some(v) = &d.visible {
                all.push(v.clone());
            }
        }
        let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
        // Proto3 JSON leaves out empty repeated fields.
        let mut out = if page.is_empty() {
            json!({})
        } else {
            json!({"localInventories": page})
        };
        if offset + size < all.len() {
            out["nextPageToken"] = json!(page_token(offset + size));
        }
        Json(out).into_response()
    }

    pub(super) fn delete_local(&self, id: &str, store: &str) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(d) = st
            .products
            .get_mut(&pid.key())
            .and_then(|e| e.local.get_mut(store))
        else {
            return not_found();
        };
        if d.latest().is_none() {
            return not_found();
        }
        // The delete takes effect after the inventory delay.
        d.push(now + self.config.inventory_delay, None);
        Json(json!({})).into_response()
    }
}
