//! Stock write rules of the products controller's `prepare_object_for_database`
//! (<https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/rest-api/Controllers/Version3/class-wc-rest-products-controller.php>).

use super::*;

/// Apply a product/variation update body at the shop's time `now`; `Err`
/// is (code, message, status).
pub(super) fn apply_update(
    p: &mut Product,
    body: &Map<String, Value>,
    site_manage_stock: bool,
    now: &str,
) -> Result<(), (String, String, u16)> {
    let invalid = |param: &str, why: &str| {
        Err((
            "rest_invalid_param".to_string(),
            format!("Invalid parameter(s): {param} ({why})"),
            400u16,
        ))
    };
    // Type checks like the REST schema's.
    if let Some(v) = body.get("stock_quantity") {
        if !v.is_null() && v.as_i64().is_none() {
            return invalid(
                "stock_quantity",
                "stock_quantity is not of type integer,null.",
            );
        }
    }
    if let Some(v) = body.get("inventory_delta") {
        if v.as_i64().is_none() {
            return invalid("inventory_delta", "inventory_delta is not of type integer.");
        }
    }
    if let Some(v) = body.get("manage_stock") {
        if !v.is_boolean() {
            return invalid("manage_stock", "manage_stock is not of type boolean.");
        }
    }
    if let Some(v) = body.get("stock_status") {
        if !matches!(v.as_str(), Some("instock" | "outofstock" | "onbackorder")) {
            return invalid(
                "stock_status",
                "stock_status is not one of instock, outofstock, and onbackorder.",
            );
        }
    }
    if let Some(v) = body.get("backorders") {
        if !matches!(v.as_str(), Some("no" | "notify" | "yes")) {
            return invalid(
                "backorders",
                "backorders is not one of no, notify, and yes.",
            );
        }
    }
    if let Some(v) = body.get("name").and_then(Value::as_str) {
        p.name = v.to_string();
    }
    let req_status = body
        .get("stock_status")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !site_manage_stock {
        if p.kind != Kind::Variable {
            if let Some(s) = req_status {
                p.stock_status = s;
            }
        }
        return Ok(());
    }
    if let Some(m) = body.get("manage_stock").and_then(Value::as_bool) {
        p.manage_stock = m;
    }
    if let Some(b) = body.get("backorders").and_then(Value::as_str) {
        p.backorders = b.to_string();
    }
    if let Some(v) = body.get("low_stock_amount") {
        p.low_stock_amount = v.as_i64();
    }
    if p.manage_stock {
        match body.get("stock_quantity") {
            Some(v) if !v.is_null() => p.stock_quantity = v.as_i64(),
            Some(_) => {}
            None => {
                if let Some(d) = body.get("inventory_delta").and_then(Value::as_i64) {
                    p.stock_quantity = Some(p.stock_quantity.unwrap_or(0) + d);
                }
            }
        }
        if p.stock_quantity.is_none() {
            p.stock_quantity = Some(0);
        }
        if p.kind != Kind::Variable {
            if let Some(s) = req_status {
                p.stock_status = s;
            }
        }
        auto_status(p);
    } else {
        p.stock_quantity = None;
        if let Some(s) = req_status {
            if p.kind != Kind::Variable {
                p.stock_status = s;
            }
        }
    }
    p.modified = now.to_string();
    Ok(())
}
