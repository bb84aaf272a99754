//! `/v1/orders/{order_id}`: the pick list — where stockd reserved each line
//! (over two warehouses, a kit's components), what a `ship` settles, and
//! the errors for an unknown order or a malformed channel, on both stores.

use crate::helpers::{on_both_stores, receipt, TestApp};
use serde_json::json;

on_both_stores!(an_order_shows_where_its_lines_are_reserved_until_shipped,);

async fn an_order_shows_where_its_lines_are_reserved_until_shipped(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.location("RTM", true, 2).await;
    app.variants(&["TEE", "KIT", "C1", "C2"]).await;
    app.put(
        "/v1/bundles/KIT",
        json!({"components": [{"sku": "C1", "qty": 2}, {"sku": "C2", "qty": 1}]}),
    )
    .await
    .expect(200);
    app.events(json!([
        receipt("r1", "TEE", "AMS", 2),
        receipt("r2", "TEE", "RTM", 5),
        receipt("r3", "C1", "RTM", 4),
        receipt("r4", "C2", "RTM", 2),
        {"key": "o1", "type": "order", "channel": "shop", "order_id": "1001",
         "lines": [{"line_id": "1", "sku": "TEE", "qty": 3}, {"line_id": "2", "sku": "KIT", "qty": 1}]},
    ]))
    .await;
    let order = app
        .get("/v1/orders/1001?channel=shop")
        .await
        .expect(200)
        .body;
    assert_eq!(order["open_qty"], 6, "{order}");
    let rows: Vec<(String, String, String, i64, Option<String>)> = order["reservations"]
        .as_array()
        .expect("reservations")
        .iter()
        .map(|r| {
            (
                r["line_id"].as_str().unwrap().to_string(),
                r["sku"].as_str().unwrap().to_string(),
                r["location"].as_str().unwrap().to_string(),
                r["open_qty"].as_i64().unwrap(),
                r["kit_sku"].as_str().map(str::to_string),
            )
        })
        .collect();
    let row = |line: &str, sku: &str, at: &str, qty: i64, kit: Option<&str>| {
        (
            line.into(),
            sku.into(),
            at.into(),
            qty,
            kit.map(str::to_string),
        )
    };
    // The first warehouse's 2 units, then 1 from the second; the kit's
    // components where they are.
    assert_eq!(
        rows,
        vec![
            row("1", "TEE", "AMS", 2, None),
            row("1", "TEE", "RTM", 1, None),
            row("2", "C1", "RTM", 2, Some("KIT")),
            row("2", "C2", "RTM", 1, Some("KIT")),
        ],
        "{order}"
    );
    // Without the channel it is another order; an unknown one is named.
    app.get("/v1/orders/1001")
        .await
        .expect_error(404, "unknown_order");
    app.get("/v1/orders/9?channel=shop")
        .await
        .expect_error(404, "unknown_order");
    app.get("/v1/orders/1001?channel=a%01b")
        .await
        .expect_error(400, "invalid_query");

    app.events(json!({"key": "s1", "type": "ship", "channel": "shop", "order_id": "1001"}))
        .await;
    let shipped = app
        .get("/v1/orders/1001?channel=shop")
        .await
        .expect(200)
        .body;
    assert_eq!(shipped["open_qty"], 0, "{shipped}");
    assert_eq!(shipped["reservations"][0]["shipped_qty"], 2, "{shipped}");
    let stock = app.stock("TEE").await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(4), Some(0)),
        "{stock}"
    );
}
