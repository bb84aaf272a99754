//! Products sub-API v1: product inputs (insert as upsert, PATCH with `updateMask`, delete) and
//! the processed products (get, list)
//! (<https://developers.google.com/merchant/api/reference/rest/products_v1/accounts.productInputs>).

use super::*;

impl Gmc {
    pub(super) fn data_source_name(&self) -> String {
        format!(
            "accounts/{}/dataSources/{}",
            self.config.account_id, self.config.data_source_id
        )
    }

    pub(super) fn check_data_source(
        &self,
        query: &[(String, String)],
    ) -> Result<String, Box<Response>> {
        match form_get(query, "dataSource") {
            None | Some("") => Err(Box::new(invalid("Required parameter: dataSource"))),
            Some(ds) if ds == self.data_source_name() => Ok(ds.to_string()),
            Some(ds) => Err(Box::new(gerr(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Data source {ds} not found."),
            ))),
        }
    }

    pub(super) fn input_json(&self, id: &ProductId, mut input: Map<String, Value>) -> Value {
        let key = id.key();
        let a = self.config.account_id;
        input.insert(
            "name".into(),
            json!(format!("accounts/{a}/productInputs/{key}")),
        );
        input.insert(
            "base64EncodedName".into(),
            json!(format!(
                "accounts/{a}/productInputs/{}",
                b64url(key.as_bytes())
            )),
        );
        input.insert(
            "product".into(),
            json!(format!("accounts/{a}/products/{key}")),
        );
        input.insert(
            "base64EncodedProduct".into(),
            json!(format!("accounts/{a}/products/{}", b64url(key.as_bytes()))),
        );
        input.insert("offerId".into(), json!(id.offer_id));
        input.insert("contentLanguage".into(), json!(id.content_language));
        input.insert("feedLabel".into(), json!(id.feed_label));
        if id.legacy_local {
            input.insert("legacyLocal".into(), json!(true));
        }
        Value::Object(input)
    }

    /// The processed product for a product input (products.proto `Product`).
    pub(super) fn processed_json(&self, id: &ProductId, input: &Value, data_source: &str) -> Value {
        let key = id.key();
        let a = self.config.account_id;
        let mut p = Map::new();
        p.insert("name".into(), json!(format!("accounts/{a}/products/{key}")));
        p.insert(
            "base64EncodedName".into(),
            json!(format!("accounts/{a}/products/{}", b64url(key.as_bytes()))),
        );
        if id.legacy_local {
            p.insert("legacyLocal".into(), json!(true));
        }
        p.insert("offerId".into(), json!(id.offer_id));
        p.insert("contentLanguage".into(), json!(id.content_language));
        p.insert("feedLabel".into(), json!(id.feed_label));
        p.insert("dataSource".into(), json!(data_source));
        if let Some(v) = input.get("versionNumber") {
            p.insert("versionNumber".into(), v.clone());
        }
        p.insert(
            "productAttributes".into(),
            input.get("productAttributes").cloned().unwrap_or(json!({})),
        );
        if let Some(c) = input.get("customAttributes") {
            p.insert("customAttributes".into(), c.clone());
        }
        p.insert("productStatus".into(), json!({}));
        Value::Object(p)
    }

    /// The "twice per day" per-product update policy; the error is a choice
    /// (UNCONFIRMED: Google does not document how the policy is enforced).
    pub(super) fn spend_budget(&self, e: &mut Entry, now: Instant) -> Result<(), Box<Response>> {
        let limit = self.config.updates_per_product_per_day;
        if limit == 0 {
            return Ok(());
        }
        while e
            .updates
            .front()
            .is_some_and(|t| now.duration_since(*t) >= DAY)
        {
            e.updates.pop_front();
        }
        if e.updates.len() >= limit as usize {
            Counters::add(&self.core.counters.rate_limit_violations, 1);
            Counters::add(&self.counters.product_budget_violations, 1);
            return Err(Box::new(quota_error(
                "quota/daily_limit_exceeded",
                &format!(
                    "Product {} was already updated {limit} times in the last 24 hours.",
                    e.key
                ),
            )));
        }
        e.updates.push_back(now);
        Ok(())
    }

    pub(super) fn insert_input(&self, query: &[(String, String)], body: Value) -> Response {
        let ds = match self.check_data_source(query) {
            Ok(ds) => ds,
            Err(r) => return *r,
        };
        let Value::Object(mut input) = body else {
            return invalid("The request body must be a ProductInput object.");
        };
        for k in [
            "name",
            "base64EncodedName",
            "product",
            "base64EncodedProduct",
        ] {
            input.remove(k);
        }
        let mut parts = Vec::new();
        for k in ["contentLanguage", "feedLabel", "offerId"] {
            match input.get(k).and_then(Value::as_str) {
                Some(v) if !v.is_empty() => parts.push(v.to_string()),
                _ => return invalid(&format!("Required field: {k}")),
            }
        }
        if !valid_feed_label(&parts[1]) {
            return invalid("feedLabel must be at most 20 characters of A-Z, 0-9, '-' and '_'.");
        }
        let mut v = Value::Object(input);
        if let Err(e) = normalize_int64(&mut v, "") {
            return invalid(&e);
        }
        let Value::Object(mut input) = v else {
            return invalid("The request body must be a ProductInput object.");
        };
        if let Err(e) = check_product_attributes(&mut input) {
            return invalid(&e);
        }
        let id = ProductId {
            legacy_local: input
                .get("legacyLocal")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            content_language: parts[0].clone(),
            feed_label: parts[1].clone(),
            offer_id: parts[2].clone(),
        };
        if self.core.rejects_sku(&id.offer_id) {
            return invalid(&format!(
                "Offer {} was rejected: invalid product data.",
                id.offer_id
            ));
        }
        let version = input.get("versionNumber").map(|v| int64_of(Some(v)));
        let key = id.key();
        let now = Instant::now();
        let mut st = lock(&self.state);
        let e = st.products.entry(key.clone()).or_insert_with(|| Entry {
            key: key.clone(),
            offer_id: id.offer_id.clone(),
            input: None,
            version_number: None,
            processed: Delayed::default(),
            local: BTreeMap::new(),
            updates: VecDeque::new(),
        });
        if e.input.is_some() {
            // An insert with a lower version than the stored one is refused; an equal
            // one is let through so retries succeed (a choice).
            if let (Some(new), Some(old)) = (version, e.version_number) {
                if new < old {
                    return gerr(
                        StatusCode::CONFLICT,
                        "ABORTED",
                        &format!("versionNumber {new} is lower than the current {old}."),
                    );
                }
            }
            if let Err(r) = self.spend_budget(e, now) {
                return *r;
            }
        }
        let out = self.input_json(&id, input);
        e.input = Some(out.clone());
        if version.is_some() {
            e.version_number = version;
        }
        let processed = self.processed_json(&id, &out, &ds);
        e.processed
            .push(now + self.config.processing_delay, Some(processed));
        Counters::add(&self.core.counters.updates_applied, 1);
        Json(out).into_response()
    }

    pub(super) fn patch_input(
        &self,
        id: &str,
        query: &[(String, String)],
        body: Value,
    ) -> Response {
        let ds = match self.check_data_source(query) {
            Ok(ds) => ds,
            Err(r) => return *r,
        };
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product input name: {id}"));
        };
        let mut body = body;
        if body.is_null() {
            body = json!({});
        }
        if let Err(e) = normalize_int64(&mut body, "") {
            return invalid(&e);
        }
        let Value::Object(mut patch) = body else {
            return invalid("The request body must be a ProductInput object.");
        };
        for (k, want) in [
            ("offerId", &pid.offer_id),
            ("contentLanguage", &pid.content_language),
            ("feedLabel", &pid.feed_label),
        ] {
            if let Some(v) = patch.get(k).and_then(Value::as_str) {
                if v != want {
                    return invalid(&format!("{k} is immutable and does not match the name."));
                }
            }
        }
        if let Err(e) = check_product_attributes(&mut patch) {
            return invalid(&e);
        }
        if self.core.rejects_sku(&pid.offer_id) {
            return invalid(&format!(
                "Offer {} was rejected: invalid product data.",
                pid.offer_id
            ));
        }
        let mask: Option<Vec<String>> = form_get(query, "updateMask").map(|m| {
            m.split(',')
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| p.split('.').map(camel).collect::<Vec<_>>().join("."))
                .collect()
        });
        let key = pid.key();
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&key) else {
            return not_found();
        };
        let Some(Value::Object(current)) = e.input.clone() else {
            return not_found();
        };
        let mut next = current;
        let new_attrs = patch
            .get("productAttributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut attrs = next
            .get("productAttributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match &mask {
            // No mask: every populated field is written.
            None => {
                for (k, v) in new_attrs {
                    attrs.insert(k, v);
                }
                if let Some(c) = patch.get("customAttributes") {
                    next.insert("customAttributes".into(), c.clone());
                }
            }
            Some(paths) => {
                for path in paths {
                    if path == "*" {
                        return invalid("The wildcard '*' is not supported in updateMask.");
                    }
                    if path == "productAttributes" {
                        attrs = new_attrs.clone();
                    } else if let Some(f) = path.strip_prefix("productAttributes.") {
                        // Masked but absent means delete.
                        match new_attrs.get(f) {
                            Some(v) => {
                                attrs.insert(f.to_string(), v.clone());
                            }
                            None => {
                                attrs.remove(f);
                            }
                        }
                    } else if path == "customAttributes" {
                        match patch.get("customAttributes") {
                            Some(c) => {
                                next.insert("customAttributes".into(), c.clone());
                            }
                            None => {
                                next.remove("customAttributes");
                            }
                        }
                    } else if let Some(name) = path.strip_prefix("customAttribute.") {
                        let given: Vec<Value> = patch
                            .get("customAttributes")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter(|c| c.get("name").and_then(Value::as_str) == Some(name))
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut list: Vec<Value> = next
                            .get("customAttributes")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        list.retain(|c| c.get("name").and_then(Value::as_str) != Some(name));
                        list.extend(given);
                        next.insert("customAttributes".into(), Value::Array(list));
                    } else {
                        return invalid(&format!("Invalid field mask path: {path}"));
                    }
                }
            }
        }
        next.insert("productAttributes".into(), Value::Object(attrs));
        if let Err(r) = self.spend_budget(e, now) {
            return *r;
        }
        let out = self.input_json(&pid, next);
        e.input = Some(out.clone());
        let processed = self.processed_json(&pid, &out, &ds);
        e.processed
            .push(now + self.config.processing_delay, Some(processed));
        Counters::add(&self.core.counters.updates_applied, 1);
        Json(out).into_response()
    }

    pub(super) fn delete_input(&self, id: &str, query: &[(String, String)]) -> Response {
        if let Err(r) = self.check_data_source(query) {
            return *r;
        }
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product input name: {id}"));
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&pid.key()) else {
            return not_found();
        };
        if e.input.take().is_none() {
            return not_found();
        }
        e.processed.push(now + self.config.processing_delay, None);
        Json(json!({})).into_response()
    }

    pub(super) fn get_product(&self, id: &str) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&pid.key()) else {
            return not_found();
        };
        e.processed.settle(now);
        match &e.processed.visible {
            Some(p) => Json(p.clone()).into_response(),
            None => not_found(),
        }
    }

    pub(super) fn list_products(&self, query: &[(String, String)]) -> Response {
        let (size, offset) = match paging(query, 25, 1000) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let mut all = Vec::new();
        for e in st.products.values_mut() {
            e.processed.settle(now);
            if let Some(p) = &e.processed.visible {
                all.push(p.clone());
            }
        }
        let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
        // Proto3 JSON leaves out empty repeated fields.
        let mut out = if page.is_empty() {
            json!({})
        } else {
            json!({"products": page})
        };
        if offset + size < all.len() {
            out["nextPageToken"] = json!(page_token(offset + size));
        }
        Json(out).into_response()
    }
}
