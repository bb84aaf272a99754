//! Simulated customers and merchant: what the shared `/_sim` endpoints do on bol.

use super::state::{Bol, Item, Offer, Order};
use super::*;

impl SimBackend for Bol {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        st.offers.iter().map(|o| st.listing(o)).collect()
    }

    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let mut out = Vec::new();
        for n in items {
            let seq = st.next_seq();
            let offer = Offer {
                offer_id: self.core.uuid(),
                ean: st.new_ean(),
                reference: n.sku.clone(),
                // v10 caps stock at 999.
                amount: n.quantity.clamp(0, 999),
                managed_by_retailer: false,
                updated_seq: seq,
                on_hold: false,
                modified: self.now(),
                unit_price: self.config.unit_price,
            };
            out.push(st.listing(&offer));
            st.add_offer(offer);
        }
        out
    }

    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let mut wanted: Vec<(String, i64)> = Vec::new();
        for (sku, qty) in lines {
            if *qty <= 0 {
                return Err(SimError::BadRequest("quantity must be positive".into()));
            }
            match wanted.iter_mut().find(|(s, _)| s == sku) {
                Some(w) => w.1 += qty,
                None => wanted.push((sku.clone(), *qty)),
            }
        }
        if wanted.is_empty() {
            return Err(SimError::BadRequest("no lines".into()));
        }
        for (sku, qty) in &wanted {
            let o = st
                .offer_by_sku(sku)
                .ok_or_else(|| SimError::UnknownSku(sku.clone()))?;
            // A customer can only buy what the shop shows.
            if o.on_hold || st.corrected(o) < *qty {
                return Err(SimError::NotAvailable);
            }
        }
        let now = self.now();
        let seq = st.next_seq();
        let mut items = Vec::new();
        for (sku, qty) in lines {
            let Some((offer_id, unit_price)) = st
                .offer_by_sku(sku)
                .map(|o| (o.offer_id.clone(), o.unit_price))
            else {
                return Err(SimError::UnknownSku(sku.clone()));
            };
            st.item_next += 1;
            items.push(Item {
                id: st.item_next.to_string(),
                offer_id,
                quantity: *qty,
                shipped: 0,
                cancelled: 0,
                cancellation_request: false,
                changed: now,
                unit_price,
            });
        }
        // Order ids look like "A2K8290LP8".
        const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut r = self.core.rand_u64();
        let mut id = String::from("A");
        for _ in 0..9 {
            id.push(ALNUM[(r % 36) as usize] as char);
            r /= 36;
        }
        id.push_str(&format!("{}", seq % 10));
        let item_ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        st.orders.push(Order {
            id: id.clone(),
            placed: now,
            seq,
            items,
        });
        Ok(json!({"order_id": id, "order_item_ids": item_ids}))
    }

    /// The customer cancels: `cancellationRequest` becomes true; the open quantity is cancelled
    /// at once unless `cancel_requires_confirmation`.
    fn cancel(&self, order_id: &str) -> Result<(), SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let confirm = self.config.cancel_requires_confirmation;
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
            i.cancellation_request = true;
            if !confirm {
                i.cancelled += i.open();
            }
            i.changed = now;
        }
        Ok(())
    }

    /// bol handles money back through returns, which are not simulated: a refund cancels what
    /// is still open; without restock the goods are lost, so the offer's amount drops.
    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
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
        let mut lost: Vec<(String, i64)> = Vec::new();
        for i in ord.items.iter_mut().filter(|i| i.open() > 0) {
            lost.push((i.offer_id.clone(), i.open()));
            i.cancelled += i.open();
            i.changed = now;
        }
        if !restock {
            for (offer_id, q) in lost {
                if let Some(o) = st.offer_mut(&offer_id) {
                    o.amount = (o.amount - q).max(0);
                }
            }
        }
        Ok(())
    }

    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let seq = st.next_seq();
        let index = st
            .offers
            .iter()
            .position(|o| o.reference == sku)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        let offer = &mut st.offers[index];
        // The seller dashboard has the API's 0..=999 range.
        offer.amount = quantity.clamp(0, 999);
        offer.updated_seq = seq;
        offer.modified = self.now();
        Ok(st.listing(&st.offers[index]))
    }
}
