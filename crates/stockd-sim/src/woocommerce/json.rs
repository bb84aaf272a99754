//! Products, variations and orders serialised as the v3 controllers answer them
//! (<https://woocommerce.github.io/woocommerce-rest-api-docs/#product-properties>).

use super::*;

impl Woo {
    pub(super) fn product_json(&self, st: &WooState, p: &Product) -> Value {
        let base = format!("{}/wp-json/wc/v3", self.home);
        let mut v = json!({
            "id": p.id,
            "name": p.name,
            "date_created": p.created,
            "date_created_gmt": p.created,
            "date_modified": p.modified,
            "date_modified_gmt": p.modified,
            "status": "publish",
            "sku": p.sku,
            "price": "10.00",
            "regular_price": "10.00",
            "sale_price": "",
            "manage_stock": p.manage_stock,
            "stock_quantity": p.stock_quantity,
            "stock_status": p.stock_status,
            "backorders": p.backorders,
            "backorders_allowed": p.backorders != "no",
            "backordered": p.manage_stock && p.stock_quantity.unwrap_or(0) < 0,
            "low_stock_amount": p.low_stock_amount,
            "meta_data": [],
        });
        if p.kind == Kind::Variation {
            v["permalink"] = json!(format!("{}/?p={}", self.home, p.id));
            v["attributes"] = json!([{"id": 0, "name": "Variant", "option": p.sku}]);
            v["_links"] = json!({
                "self": [{"href": format!("{base}/products/{}/variations/{}", p.parent_id, p.id)}],
                "collection": [{"href": format!("{base}/products/{}/variations", p.parent_id)}],
                "up": [{"href": format!("{base}/products/{}", p.parent_id)}],
            });
        } else {
            v["slug"] = json!(p.name.to_lowercase().replace(' ', "-"));
            v["permalink"] = json!(format!(
                "{}/product/{}/",
                self.home,
                p.name.to_lowercase().replace(' ', "-")
            ));
            v["type"] = json!(if p.kind == Kind::Variable {
                "variable"
            } else {
                "simple"
            });
            v["parent_id"] = json!(0);
            v["variations"] = json!(p.variations);
            v["attributes"] = json!([]);
            v["_links"] = json!({
                "self": [{"href": format!("{base}/products/{}", p.id)}],
                "collection": [{"href": format!("{base}/products")}],
            });
        }
        let _ = st;
        v
    }

    pub(super) fn order_json(&self, o: &Order) -> Value {
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|l| {
                let total = format!("{}.00", l.quantity * 10);
                json!({
                    "id": l.id,
                    "name": l.name,
                    "product_id": l.product_id,
                    "variation_id": l.variation_id,
                    "quantity": l.quantity,
                    "tax_class": "",
                    "subtotal": total,
                    "subtotal_tax": "0.00",
                    "total": total,
                    "total_tax": "0.00",
                    "taxes": [],
                    "meta_data": if l.restocked > 0 {
                        json!([{"id": l.id + 20_000, "key": "_restock_refunded_items", "value": l.restocked.to_string()}])
                    } else {
                        json!([])
                    },
                    "sku": l.sku,
                    "price": 10,
                })
            })
            .collect();
        let total: i64 = o.lines.iter().map(|l| l.quantity * 10).sum();
        json!({
            "id": o.id,
            "parent_id": 0,
            "number": o.id.to_string(),
            "order_key": o.key,
            "created_via": "checkout",
            "status": o.status,
            "currency": "EUR",
            "date_created": o.created,
            "date_created_gmt": o.created,
            "date_modified": o.modified,
            "date_modified_gmt": o.modified,
            "date_paid": o.paid,
            "date_paid_gmt": o.paid,
            "total": format!("{total}.00"),
            "total_tax": "0.00",
            "customer_id": 0,
            "billing": {"first_name": "Sim", "last_name": "Customer", "email": "customer@example.com"},
            "payment_method": "bacs",
            "set_paid": true,
            "line_items": lines,
            "refunds": o.refunds.iter().map(|(id, t)| json!({"id": id, "reason": "", "total": format!("-{t}.00")})).collect::<Vec<_>>(),
        })
    }
}
