//! Locations and variants, on both stores: upserts, lists, GTIN check digits,
//! atomic bulk upserts with per-item details.

use crate::helpers::{on_both_stores, TestApp};
use serde_json::json;

on_both_stores!(
    locations_are_put_and_listed,
    variants_are_checked_and_bulk_is_atomic
);

async fn locations_are_put_and_listed(app: &TestApp) {
    let put = app
        .put(
            "/v1/locations/AMS",
            json!({"name": "Amsterdam DC", "sellable": true, "priority": 1}),
        )
        .await
        .expect(200);
    assert_eq!(
        put.body["location"],
        json!({"id": "AMS", "name": "Amsterdam DC", "sellable": true, "priority": 1})
    );
    app.put(
        "/v1/locations/QC",
        json!({"name": "Quality control", "sellable": false}),
    )
    .await
    .expect(200);
    // PUT replaces.
    app.put(
        "/v1/locations/AMS",
        json!({"name": "Amsterdam", "priority": 3}),
    )
    .await
    .expect(200);
    let list = app.get("/v1/locations").await.expect(200).body;
    let mut items = list["items"].as_array().unwrap().clone();
    items.sort_by_key(|l| l["id"].as_str().unwrap().to_string());
    assert_eq!(
        items,
        [
            json!({"id": "AMS", "name": "Amsterdam", "sellable": true, "priority": 3}),
            json!({"id": "QC", "name": "Quality control", "sellable": false, "priority": 0}),
        ]
    );
    let reply = app
        .put(
            "/v1/locations/X",
            json!({"sellable": true, "priority": "high"}),
        )
        .await
        .expect_error(422, "invalid_location");
    assert_eq!(
        reply.detail_fields(),
        [(0, "priority".to_string())],
        "a type error is reported before missing fields"
    );
    let reply = app
        .put("/v1/locations/X", json!({"sellable": true}))
        .await
        .expect_error(422, "invalid_location");
    assert_eq!(reply.detail_fields(), [(0, "name".to_string())]);
}

async fn variants_are_checked_and_bulk_is_atomic(app: &TestApp) {
    let put = app
        .put(
            "/v1/variants/TEE-M",
            json!({"title": "Tee M", "product_id": "TEE", "gtin": "8712345678906"}),
        )
        .await
        .expect(200);
    assert_eq!(put.body["replayed"], 0);
    assert_eq!(
        app.get("/v1/variants/TEE-M").await.expect(200).body,
        json!({"sku": "TEE-M", "title": "Tee M", "product_id": "TEE", "gtin": "8712345678906"})
    );
    app.get("/v1/variants/NOPE")
        .await
        .expect_error(404, "unknown_sku");

    let reply = app
        .put("/v1/variants/TEE-L", json!({"gtin": "8712345678907"}))
        .await
        .expect_error(422, "invalid_variant");
    assert_eq!(reply.detail_fields(), [(0, "gtin".to_string())]);

    let reply = app
        .post(
            "/v1/variants",
            json!([
                {"sku": "A", "title": "a"},
                {"sku": "B", "gtin": "123"},
                {"title": "no sku"},
                {"sku": "A"},
            ]),
        )
        .await
        .expect_error(422, "invalid_variant");
    assert_eq!(
        reply.detail_fields(),
        [
            (1, "gtin".to_string()),
            (2, "sku".to_string()),
            (3, "sku".to_string())
        ]
    );
    app.get("/v1/variants/A")
        .await
        .expect_error(404, "unknown_sku");

    let summary = app
        .post(
            "/v1/variants",
            json!([{"sku": "A", "title": "a"}, {"sku": "B", "gtin": "96385074"}]),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(summary, json!({"upserted": 2, "replayed": 0}));
    assert_eq!(
        app.get("/v1/variants/B").await.expect(200).body["gtin"],
        "96385074"
    );
    app.post("/v1/variants", json!({"sku": "C"}))
        .await
        .expect_error(422, "invalid_variant");
}
