//! Products and variations: list, get, update, and the batch endpoints with their 100-item
//! limit (<https://woocommerce.github.io/woocommerce-rest-api-docs/#products>,
//! <https://woocommerce.github.io/woocommerce-rest-api-docs/#product-variations>).

use super::*;

impl Woo {
    pub(super) fn list_products(&self, ctx: &Ctx) -> Response {
        let q = |n: &str| {
            ctx.query
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let st = lock(&self.state);
        let sku = q("sku");
        let ty = q("type");
        let include = include_ids(ctx);
        // Newest first, WooCommerce's default order (date desc); `collection` reorders.
        let items: Vec<Value> = st
            .products
            .values()
            .rev()
            .filter(|p| p.kind != Kind::Variation)
            .filter(|p| include.as_ref().is_none_or(|ids| ids.contains(&p.id)))
            .filter(|p| {
                sku.as_ref()
                    .is_none_or(|s| s.split(',').any(|x| x == p.sku))
            })
            .filter(|p| {
                ty.as_deref().is_none_or(|t| {
                    t == if p.kind == Kind::Variable {
                        "variable"
                    } else {
                        "simple"
                    }
                })
            })
            .map(|p| self.product_json(&st, p))
            .collect();
        drop(st);
        match collection::order_items(ctx, items) {
            Ok(items) => self.paginate(ctx, items),
            Err(refused) => *refused,
        }
    }

    pub(super) fn get_product(&self, id: &str) -> Response {
        let st = lock(&self.state);
        match id.parse::<u64>().ok().and_then(|i| st.products.get(&i)) {
            Some(p) if p.kind == Kind::Variation => variation_on_products(),
            Some(p) => wc_json(StatusCode::OK, &self.product_json(&st, p)),
            None => invalid_id(),
        }
    }

    pub(super) fn update_product(&self, id: &str, ctx: &Ctx) -> Response {
        let Some(body) = ctx
            .body
            .as_object()
            .cloned()
            .or_else(|| ctx.body.is_null().then(Map::new))
        else {
            return wc_error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_json",
                "Invalid JSON body passed.",
            );
        };
        let mut st = lock(&self.state);
        let Some(pid) = id
            .parse::<u64>()
            .ok()
            .filter(|i| st.products.contains_key(i))
        else {
            return invalid_id();
        };
        match self.update_in(&mut st, pid, None, &body) {
            Ok(v) => wc_json(StatusCode::OK, &v),
            Err(e) => wc_json(
                StatusCode::from_u16(e["data"]["status"].as_u64().unwrap_or(400) as u16)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                &e,
            ),
        }
    }

    /// Update one product (parent None) or variation (parent Some); returns the resource or
    /// a WooCommerce error object.
    pub(super) fn update_in(
        &self,
        st: &mut WooState,
        id: u64,
        parent: Option<u64>,
        body: &Map<String, Value>,
    ) -> Result<Value, Value> {
        let Some(p) = st.products.get(&id) else {
            return Err(match parent {
                None => err_obj("woocommerce_rest_product_invalid_id", "Invalid ID.", 400),
                Some(_) => err_obj(
                    "woocommerce_rest_product_variation_invalid_id",
                    "Invalid ID.",
                    400,
                ),
            });
        };
        match parent {
            None if p.kind == Kind::Variation => {
                return Err(err_obj(
                    "woocommerce_rest_invalid_product_id",
                    "To manipulate product variations you should use the /products/<product_id>/variations/<id> endpoint.",
                    404,
                ))
            }
            Some(par) if p.kind != Kind::Variation || p.parent_id != par => {
                return Err(err_obj("woocommerce_rest_product_variation_invalid_id", "Invalid ID.", 400))
            }
            _ => {}
        }
        if self.core.rejects_sku(&p.sku) {
            // Injected permanent per-item failure (code chosen: a permission-style refusal).
            return Err(err_obj(
                "woocommerce_rest_cannot_edit",
                "Sorry, you are not allowed to edit this resource.",
                403,
            ));
        }
        if let Some(new_sku) = body.get("sku").and_then(Value::as_str) {
            if !new_sku.is_empty() && st.products.values().any(|o| o.sku == new_sku && o.id != id) {
                return Err(err_obj(
                    "product_invalid_sku",
                    "Invalid or duplicated SKU.",
                    400,
                ));
            }
        }
        let before = st.products[&id].stock_quantity;
        let mut p = st.products[&id].clone();
        if let Err((code, msg, status)) =
            apply_update(&mut p, body, self.config.manage_stock, &st.now_local())
        {
            return Err(err_obj(&code, &msg, status));
        }
        if let Some(s) = body.get("sku").and_then(Value::as_str) {
            p.sku = s.to_string();
        }
        let parent_id = p.parent_id;
        let is_var = p.kind == Kind::Variation;
        st.products.insert(id, p);
        if is_var {
            st.sync_parent(parent_id);
        }
        if before != st.products[&id].stock_quantity
            || body.contains_key("stock_quantity")
            || body.contains_key("inventory_delta")
        {
            Counters::add(&self.core.counters.updates_applied, 1);
        }
        Ok(self.product_json(st, &st.products[&id]))
    }

    pub(super) fn list_variations(&self, pid: &str, ctx: &Ctx) -> Response {
        let st = lock(&self.state);
        let Some(parent) = pid
            .parse::<u64>()
            .ok()
            .and_then(|i| st.products.get(&i))
            .filter(|p| p.kind != Kind::Variation)
        else {
            return invalid_id();
        };
        let include = include_ids(ctx);
        let items: Vec<Value> = parent
            .variations
            .iter()
            .rev()
            .filter(|v| include.as_ref().is_none_or(|ids| ids.contains(v)))
            .filter_map(|v| st.products.get(v))
            .map(|v| self.product_json(&st, v))
            .collect();
        drop(st);
        match collection::order_items(ctx, items) {
            Ok(items) => self.paginate(ctx, items),
            Err(refused) => *refused,
        }
    }

    pub(super) fn get_variation(&self, pid: &str, id: &str) -> Response {
        let st = lock(&self.state);
        let parent = pid.parse::<u64>().ok();
        match id.parse::<u64>().ok().and_then(|i| st.products.get(&i)) {
            Some(v) if v.kind == Kind::Variation && Some(v.parent_id) == parent => {
                wc_json(StatusCode::OK, &self.product_json(&st, v))
            }
            _ => wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_product_variation_invalid_id",
                "Invalid ID.",
            ),
        }
    }

    pub(super) fn update_variation(&self, pid: &str, id: &str, ctx: &Ctx) -> Response {
        let Some(body) = ctx
            .body
            .as_object()
            .cloned()
            .or_else(|| ctx.body.is_null().then(Map::new))
        else {
            return wc_error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_json",
                "Invalid JSON body passed.",
            );
        };
        let (Ok(p), Ok(i)) = (pid.parse::<u64>(), id.parse::<u64>()) else {
            return wc_error(
                StatusCode::NOT_FOUND,
                "woocommerce_rest_product_variation_invalid_id",
                "Invalid ID.",
            );
        };
        let mut st = lock(&self.state);
        match self.update_in(&mut st, i, Some(p), &body) {
            Ok(v) => wc_json(StatusCode::OK, &v),
            Err(mut e) => {
                e["data"]["status"] = json!(404);
                wc_json(StatusCode::NOT_FOUND, &e)
            }
        }
    }

    pub(super) fn batch(&self, ctx: &Ctx, parent: Option<u64>) -> Response {
        let empty = Map::new();
        let body = ctx.body.as_object().unwrap_or(&empty);
        let arr = |k: &str| body.get(k).and_then(Value::as_array).cloned();
        let (create, update, delete) = (arr("create"), arr("update"), arr("delete"));
        let n = create.as_ref().map_or(0, Vec::len)
            + update.as_ref().map_or(0, Vec::len)
            + delete.as_ref().map_or(0, Vec::len);
        if n > BATCH_LIMIT {
            return wc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "woocommerce_rest_request_entity_too_large",
                &format!("Unable to accept more than {BATCH_LIMIT} items for this request."),
            );
        }
        let mut st = lock(&self.state);
        if let Some(p) = parent {
            if !st
                .products
                .get(&p)
                .is_some_and(|x| x.kind == Kind::Variable)
            {
                return invalid_id();
            }
        }
        let mut out = Map::new();
        if let Some(items) = create {
            let mut res = Vec::new();
            for it in items {
                res.push(
                    match self.create_in(&mut st, it.as_object().unwrap_or(&empty), parent) {
                        Ok(v) => v,
                        Err(e) => json!({"id": 0, "error": e}),
                    },
                );
            }
            out.insert("create".into(), Value::Array(res));
        }
        if let Some(items) = update {
            let mut res = Vec::new();
            for it in items {
                let obj = it.as_object().cloned().unwrap_or_default();
                let id = obj.get("id").and_then(Value::as_u64).unwrap_or(0);
                res.push(match self.update_in(&mut st, id, parent, &obj) {
                    Ok(v) => v,
                    Err(e) => json!({"id": id, "error": e}),
                });
            }
            out.insert("update".into(), Value::Array(res));
        }
        if let Some(items) = delete {
            let mut res = Vec::new();
            for it in items {
                let id = it
                    .as_u64()
                    .or_else(|| it.get("id").and_then(Value::as_u64))
                    .unwrap_or(0);
                // Batch deletes use force=true.
                let ok = st.products.get(&id).is_some_and(|p| match parent {
                    None => p.kind != Kind::Variation,
                    Some(par) => p.kind == Kind::Variation && p.parent_id == par,
                });
                if ok {
                    let v = self.product_json(&st, &st.products[&id]);
                    let removed = st.products.remove(&id);
                    if let Some(r) = removed {
                        for c in r.variations {
                            st.products.remove(&c);
                        }
                        if r.kind == Kind::Variation {
                            if let Some(par) = st.products.get_mut(&r.parent_id) {
                                par.variations.retain(|x| *x != id);
                            }
                            st.sync_parent(r.parent_id);
                        }
                    }
                    res.push(v);
                } else {
                    res.push(json!({"id": id, "error": err_obj("woocommerce_rest_product_invalid_id", "Invalid ID.", 400)}));
                }
            }
            out.insert("delete".into(), Value::Array(res));
        }
        wc_json(StatusCode::OK, &Value::Object(out))
    }

    pub(super) fn create_in(
        &self,
        st: &mut WooState,
        body: &Map<String, Value>,
        parent: Option<u64>,
    ) -> Result<Value, Value> {
        let sku = body
            .get("sku")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !sku.is_empty() && st.products.values().any(|p| p.sku == sku) {
            return Err(err_obj(
                "product_invalid_sku",
                "Invalid or duplicated SKU.",
                400,
            ));
        }
        let kind = match (parent, body.get("type").and_then(Value::as_str)) {
            (Some(_), _) => Kind::Variation,
            (None, Some("variable")) => Kind::Variable,
            (None, None | Some("simple")) => Kind::Simple,
            (None, Some(_)) => {
                return Err(err_obj(
                    "woocommerce_rest_invalid_product_type",
                    "Invalid product type.",
                    400,
                ))
            }
        };
        let id = st.post_id();
        let now = st.now_local();
        let mut p = Product {
            id,
            name: body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&sku)
                .to_string(),
            kind,
            parent_id: parent.unwrap_or(0),
            sku,
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".into(),
            backorders: "no".into(),
            low_stock_amount: None,
            variations: vec![],
            created: now.clone(),
            modified: now,
        };
        if let Err((code, msg, status)) =
            apply_update(&mut p, body, self.config.manage_stock, &st.now_local())
        {
            st.next_post -= 1;
            return Err(err_obj(&code, &msg, status));
        }
        st.products.insert(id, p);
        if let Some(par) = parent {
            if let Some(pp) = st.products.get_mut(&par) {
                pp.variations.push(id);
            }
            st.sync_parent(par);
        }
        Ok(self.product_json(st, &st.products[&id]))
    }
}
