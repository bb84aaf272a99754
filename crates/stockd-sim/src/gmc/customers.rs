//! What the shared `/_sim` endpoints do on Merchant Center: listings, and no orders.

use super::*;

impl Gmc {
    pub(super) fn listing_of(&self, e: &mut Entry, now: Instant) -> Option<SimListing> {
        e.processed.settle(now);
        let p = e.processed.visible.as_ref()?;
        let availability = listing_availability(p).to_string();
        let mut quantity = 0;
        for (store, d) in e.local.iter_mut() {
            d.settle(now);
            let counts = match &self.config.store_code {
                Some(s) => s == store,
                None => true,
            };
            if counts {
                quantity += int64_of(
                    d.visible
                        .as_ref()
                        .and_then(|v| v.pointer("/localInventoryAttributes/quantity")),
                );
            }
        }
        let mut external = Map::new();
        external.insert("offer_id".into(), json!(e.offer_id));
        external.insert(
            "content_language".into(),
            p.get("contentLanguage").cloned().unwrap_or(json!("")),
        );
        external.insert(
            "feed_label".into(),
            p.get("feedLabel").cloned().unwrap_or(json!("")),
        );
        if let Some(s) = &self.config.store_code {
            external.insert("store_code".into(), json!(s));
        }
        Some(SimListing {
            sku: e.offer_id.clone(),
            external,
            quantity,
            availability,
        })
    }
}

impl SimBackend for Gmc {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.products
            .values_mut()
            .filter_map(|e| self.listing_of(e, now))
            .collect()
    }

    /// Listings are created as already-processed products (offer id = SKU), with a local
    /// inventory at `store_code` when configured.
    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let now = Instant::now();
        let ds = self.data_source_name();
        let mut out = Vec::new();
        for item in items {
            let id = ProductId {
                legacy_local: false,
                content_language: self.config.content_language.clone(),
                feed_label: self.config.feed_label.clone(),
                offer_id: item.sku.clone(),
            };
            let availability = if item.quantity > 0 {
                "IN_STOCK"
            } else {
                "OUT_OF_STOCK"
            };
            let mut input = Map::new();
            input.insert(
                "productAttributes".into(),
                json!({"availability": availability}),
            );
            let input = self.input_json(&id, input);
            let processed = self.processed_json(&id, &input, &ds);
            let key = id.key();
            let mut local = BTreeMap::new();
            if let Some(store) = &self.config.store_code {
                let attrs = json!({"availability": availability, "quantity": item.quantity.max(0).to_string()});
                local.insert(
                    store.clone(),
                    Delayed::now(self.local_json(&key, store, attrs)),
                );
            }
            let mut e = Entry {
                key: key.clone(),
                offer_id: item.sku.clone(),
                input: Some(input),
                version_number: None,
                processed: Delayed::now(processed),
                local,
                updates: VecDeque::new(),
            };
            if let Some(l) = self.listing_of(&mut e, now) {
                out.push(l);
            }
            lock(&self.state).products.insert(key, e);
        }
        out
    }

    fn buy(&self, _lines: &[(String, i64)]) -> Result<Value, SimError> {
        Err(SimError::BadRequest("no orders on this channel".into()))
    }

    fn cancel(&self, _order_id: &str) -> Result<(), SimError> {
        Err(SimError::BadRequest("no orders on this channel".into()))
    }

    fn refund(&self, _order_id: &str, _restock: bool) -> Result<(), SimError> {
        Err(SimError::BadRequest("no orders on this channel".into()))
    }

    /// Merchant Center's product editor: the availability (and a local
    /// inventory's quantity) change at once, without going through the API.
    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let now = Instant::now();
        let availability = if quantity > 0 {
            "IN_STOCK"
        } else {
            "OUT_OF_STOCK"
        };
        let mut st = lock(&self.state);
        let entry = st
            .products
            .values_mut()
            .find(|e| e.offer_id == sku && e.input.is_some())
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        entry.processed.settle(now);
        for product in [entry.input.as_mut(), entry.processed.visible.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(attrs) = product
                .get_mut("productAttributes")
                .and_then(Value::as_object_mut)
            {
                attrs.insert("availability".into(), json!(availability));
            }
        }
        for local in entry.local.values_mut() {
            local.settle(now);
            if let Some(attrs) = local
                .visible
                .as_mut()
                .and_then(|v| v.get_mut("localInventoryAttributes"))
                .and_then(Value::as_object_mut)
            {
                attrs.insert("availability".into(), json!(availability));
                attrs.insert("quantity".into(), json!(quantity.to_string()));
            }
        }
        let entry = st
            .products
            .values_mut()
            .find(|e| e.offer_id == sku && e.input.is_some())
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        self.listing_of(entry, now)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))
    }
}
