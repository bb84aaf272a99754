//! What the shared `/_sim` endpoints do on WooCommerce.

use super::*;

impl SimBackend for Woo {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let st = lock(&self.state);
        st.products
            .values()
            .filter(|p| p.kind != Kind::Variable)
            .map(|p| st.listing(p))
            .collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        let now = st.now_local();
        let mut parent: Option<u64> = None;
        let mut out = Vec::new();
        for n in items {
            if n.variation && parent.is_none() {
                let id = st.post_id();
                st.products.insert(
                    id,
                    Product {
                        id,
                        name: format!("Variable product {id}"),
                        kind: Kind::Variable,
                        parent_id: 0,
                        sku: String::new(),
                        manage_stock: false,
                        stock_quantity: None,
                        stock_status: "instock".into(),
                        backorders: "no".into(),
                        low_stock_amount: None,
                        variations: vec![],
                        created: now.clone(),
                        modified: now.clone(),
                    },
                );
                parent = Some(id);
            }
            let id = st.post_id();
            let mut p = Product {
                id,
                name: format!("Product {}", n.sku),
                kind: if n.variation {
                    Kind::Variation
                } else {
                    Kind::Simple
                },
                parent_id: if n.variation { parent.unwrap_or(0) } else { 0 },
                sku: n.sku.clone(),
                manage_stock: true,
                stock_quantity: Some(n.quantity),
                stock_status: "instock".into(),
                backorders: "no".into(),
                low_stock_amount: None,
                variations: vec![],
                created: now.clone(),
                modified: now.clone(),
            };
            auto_status(&mut p);
            out.push(st.listing(&p));
            if n.variation {
                if let Some(pp) = parent.and_then(|x| st.products.get_mut(&x)) {
                    pp.variations.push(id);
                }
            }
            st.products.insert(id, p);
        }
        if let Some(p) = parent {
            st.sync_parent(p);
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        let mut want: HashMap<u64, i64> = HashMap::new();
        for (sku, qty) in lines {
            let p = st
                .by_sku(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            *want.entry(p.id).or_default() += qty;
        }
        for (id, qty) in &want {
            if !Self::sellable(&st.products[id], *qty) {
                return Err(SimError::NotAvailable);
            }
        }
        let mut order_lines = Vec::new();
        for (sku, qty) in lines {
            let p = st
                .by_sku(sku)
                .cloned()
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            let line_id = st.next_line;
            st.next_line += 1;
            let (product_id, variation_id) = if p.kind == Kind::Variation {
                (p.parent_id, p.id)
            } else {
                (p.id, 0)
            };
            order_lines.push(Line {
                id: line_id,
                product_id,
                variation_id,
                sku: sku.clone(),
                quantity: *qty,
                name: p.name.clone(),
                restocked: 0,
            });
        }
        let id = st.post_id();
        let now = st.now_local();
        let key = format!("wc_order_{:013x}", self.core.rand_u64() >> 12);
        let order = Order {
            id,
            status: "processing".into(),
            created: now.clone(),
            modified: now.clone(),
            paid: Some(now),
            lines: order_lines,
            refunds: vec![],
            key,
        };
        // set_paid → processing reduces stock (the exact trigger is UNCONFIRMED).
        Self::move_stock(&mut st, &order.lines, -1);
        st.orders.insert(id, order.clone());
        self.emit(&mut st, "order.created", &order);
        let body = self.order_json(&order);
        Ok(
            json!({"order_id": id.to_string(), "status": "processing", "line_items": body["line_items"]}),
        )
    }

    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let id: u64 = order_id
            .parse()
            .map_err(|_| SimError::UnknownOrder(order_id.into()))?;
        let o = st
            .orders
            .get(&id)
            .cloned()
            .ok_or_else(|| SimError::UnknownOrder(order_id.into()))?;
        if matches!(o.status.as_str(), "cancelled" | "refunded") {
            return Err(SimError::InvalidState(format!("order is {}", o.status)));
        }
        let reduced = matches!(o.status.as_str(), "processing" | "completed" | "on-hold");
        if reduced {
            Self::move_stock(&mut st, &o.lines, 1);
        }
        let now = st.now_local();
        let o = st.orders.get_mut(&id).expect("exists");
        o.status = "cancelled".into();
        o.modified = now;
        let o = o.clone();
        self.emit(&mut st, "order.updated", &o);
        Ok(())
    }

    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        let id: u64 = order_id
            .parse()
            .map_err(|_| SimError::UnknownOrder(order_id.into()))?;
        let o = st
            .orders
            .get(&id)
            .cloned()
            .ok_or_else(|| SimError::UnknownOrder(order_id.into()))?;
        if matches!(o.status.as_str(), "cancelled" | "refunded") {
            return Err(SimError::InvalidState(format!("order is {}", o.status)));
        }
        if restock {
            Self::move_stock(&mut st, &o.lines, 1);
        }
        let refund_id = st.post_id();
        let total: i64 = o.lines.iter().map(|l| l.quantity * 10).sum();
        super::refunds::record_amount_only(&mut st, id, refund_id, total);
        let now = st.now_local();
        let o = st.orders.get_mut(&id).expect("exists");
        o.status = "refunded".into();
        o.refunds.push((refund_id, total));
        o.modified = now;
        let o = o.clone();
        // order.updated fires on woocommerce_order_refunded.
        self.emit(&mut st, "order.updated", &o);
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        let now = st.now_local();
        let id = st
            .products
            .values()
            .find(|p| p.sku == sku && p.kind != Kind::Variable)
            .map(|p| p.id)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let parent = {
            let p = st
                .products
                .get_mut(&id)
                .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
            p.manage_stock = true;
            p.stock_quantity = Some(quantity);
            p.modified = now;
            auto_status(p);
            p.parent_id
        };
        if parent != 0 {
            st.sync_parent(parent);
        }
        let p = st
            .products
            .get(&id)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        Ok(st.listing(p))
    }
}
