//! Kits, on both stores: the pool is the minimum over components, cycles and
//! unknown variants are refused, definitions can be listed and removed, and
//! every change is recorded.

use crate::helpers::{on_both_stores, receipt, TestApp};
use serde_json::json;

on_both_stores!(
    kit_pool_is_the_scarcest_component,
    bad_kits_are_refused,
    a_kit_line_short_on_several_components_is_applied,
    a_kit_split_over_locations_ships_whole_kits_only,
    kit_definition_changes_are_recorded
);

async fn kit_quantity(app: &TestApp) -> i64 {
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    page["items"][0]["quantity"].as_i64().expect("quantity")
}

async fn kit_pool_is_the_scarcest_component(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.variants(&["KIT", "C1", "C2"]).await;
    app.put("/v1/channels/shop", json!({"kind": "shopify"}))
        .await
        .expect(200);
    app.post("/v1/channels/shop/listings", json!([{"sku": "KIT"}]))
        .await
        .expect(200);
    app.events(json!([
        receipt("r1", "C1", "AMS", 10),
        receipt("r2", "C2", "AMS", 3)
    ]))
    .await;
    let kit = app
        .put(
            "/v1/bundles/KIT",
            json!({"components": [{"sku": "C1", "qty": 2}, {"sku": "C2", "qty": 1}]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        kit,
        json!({"kit": "KIT", "components": [{"sku": "C1", "qty": 2}, {"sku": "C2", "qty": 1}]})
    );
    // min(⌊10 / 2⌋, ⌊3 / 1⌋) = 3.
    assert_eq!(kit_quantity(app).await, 3);
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(page["items"][0]["explain"][0]["step"], "kit");
    // Selling a component lowers the kit; pre-built kits add to it.
    app.events(json!([
        {"key": "o1", "type": "order", "order_id": "1", "lines": [{"line_id": "1", "sku": "C1", "qty": 6}]},
        receipt("r3", "KIT", "AMS", 1),
    ]))
    .await;
    assert_eq!(kit_quantity(app).await, 3);
    let list = app.get("/v1/bundles").await.expect(200).body;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    app.delete("/v1/bundles/KIT").await.expect(204);
    app.delete("/v1/bundles/KIT")
        .await
        .expect_error(404, "unknown_bundle");
    // Without the definition only the pre-built unit counts.
    assert_eq!(kit_quantity(app).await, 1);
}

async fn bad_kits_are_refused(app: &TestApp) {
    app.variants(&["KIT", "INNER", "C1"]).await;
    app.put(
        "/v1/bundles/KIT",
        json!({"components": [{"sku": "INNER", "qty": 1}]}),
    )
    .await
    .expect(200);
    app.put(
        "/v1/bundles/INNER",
        json!({"components": [{"sku": "C1", "qty": 2}]}),
    )
    .await
    .expect(200);
    let reply = app
        .put(
            "/v1/bundles/C1",
            json!({"components": [{"sku": "KIT", "qty": 1}]}),
        )
        .await
        .expect_error(422, "bundle_cycle");
    assert!(reply.text.contains("KIT"), "{}", reply.text);
    app.put(
        "/v1/bundles/C1",
        json!({"components": [{"sku": "C1", "qty": 1}]}),
    )
    .await
    .expect_error(422, "self_reference");
    let reply = app
        .put(
            "/v1/bundles/GHOST",
            json!({"components": [{"sku": "C1", "qty": 1}, {"sku": "NOPE", "qty": 1}]}),
        )
        .await
        .expect_error(422, "unknown_sku");
    assert_eq!(
        reply.detail_fields(),
        [(0, "kit".to_string()), (0, "components[1].sku".to_string())]
    );
    let reply = app
        .put(
            "/v1/bundles/KIT",
            json!({"components": [{"sku": "C1", "qty": 0}]}),
        )
        .await
        .expect_error(422, "invalid_bundle");
    assert_eq!(
        reply.detail_fields(),
        [(0, "components[0].qty".to_string())]
    );
    let list = app.get("/v1/bundles").await.expect(200).body;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "nothing changed"
    );
}

/// A kit ordered with none of its components in stock: the channel already
/// sold it, so the order applies and each short component is an oversell.
async fn a_kit_line_short_on_several_components_is_applied(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.variants(&["KIT", "C1", "C2"]).await;
    app.put(
        "/v1/bundles/KIT",
        json!({"components": [{"sku": "C1", "qty": 2}, {"sku": "C2", "qty": 1}]}),
    )
    .await
    .expect(200);
    let results = app
        .events(json!([
            {"key": "o1", "type": "order", "channel": "shop", "order_id": "1",
             "lines": [{"line_id": "1", "sku": "KIT", "qty": 2}]}
        ]))
        .await;
    assert_eq!(results[0]["status"], "applied", "{results:?}");
    assert_eq!(app.stock("C1").await["oversold"], 4);
    assert_eq!(app.stock("C2").await["oversold"], 2);
}

/// A kit whose components sit at two locations: a ship naming one location
/// cannot send one component alone; the line without a location ships both.
async fn a_kit_split_over_locations_ships_whole_kits_only(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.location("RTM", true, 2).await;
    app.variants(&["KIT", "C1", "C2"]).await;
    app.put(
        "/v1/bundles/KIT",
        json!({"components": [{"sku": "C1", "qty": 2}, {"sku": "C2", "qty": 1}]}),
    )
    .await
    .expect(200);
    app.events(json!([
        receipt("r1", "C1", "AMS", 2),
        receipt("r2", "C2", "RTM", 1),
        {"key": "o1", "type": "order", "channel": "shop", "order_id": "1",
         "lines": [{"line_id": "1", "sku": "KIT", "qty": 1}]}
    ]))
    .await;
    for location in ["AMS", "RTM"] {
        let reply = app
            .post(
                "/v1/events",
                json!([{"key": format!("s-{location}"), "type": "ship", "channel": "shop",
                        "order_id": "1",
                        "lines": [{"line_id": "1", "location": location}]}]),
            )
            .await
            .expect_error(422, "reservation_exceeded");
        assert_eq!(reply.detail_fields(), [(0, "lines".to_string())]);
    }
    let reserved =
        |stock: serde_json::Value| (stock["on_hand"].as_i64(), stock["reserved"].as_i64());
    assert_eq!(reserved(app.stock("C1").await), (Some(2), Some(2)));
    assert_eq!(reserved(app.stock("C2").await), (Some(1), Some(1)));
    let results = app
        .events(
            json!([{"key": "s", "type": "ship", "channel": "shop", "order_id": "1",
                        "lines": [{"line_id": "1"}]}]),
        )
        .await;
    assert_eq!(results[0]["status"], "applied", "{results:?}");
    assert_eq!(reserved(app.stock("C1").await), (Some(0), Some(0)));
    assert_eq!(reserved(app.stock("C2").await), (Some(0), Some(0)));
}

/// Every accepted change of a kit definition is in the audit trail with its
/// author, in order; refused changes are not; the trail pages and filters.
async fn kit_definition_changes_are_recorded(app: &TestApp) {
    app.variants(&["KIT", "BOX", "C1", "C2"]).await;
    let put = |kit: &'static str, components: serde_json::Value| async move {
        app.put(
            &format!("/v1/bundles/{kit}"),
            json!({ "components": components }),
        )
        .await
    };
    put("KIT", json!([{"sku": "C1", "qty": 2}]))
        .await
        .expect(200);
    put("BOX", json!([{"sku": "C2", "qty": 1}]))
        .await
        .expect(200);
    put(
        "KIT",
        json!([{"sku": "C1", "qty": 1}, {"sku": "C2", "qty": 3}]),
    )
    .await
    .expect(200);
    // Refused: a cycle. Not a change.
    put("C1", json!([{"sku": "KIT", "qty": 1}]))
        .await
        .expect_error(422, "bundle_cycle");
    app.delete("/v1/bundles/KIT").await.expect(204);
    app.delete("/v1/bundles/KIT")
        .await
        .expect_error(404, "unknown_bundle");

    let all = app.get("/v1/kit-changes").await.expect(200).body;
    let items = all["items"].as_array().expect("items");
    let summary: Vec<(String, String)> = items
        .iter()
        .map(|c| {
            (
                c["kit"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("KIT".to_string(), "put".to_string()),
            ("BOX".to_string(), "put".to_string()),
            ("KIT".to_string(), "put".to_string()),
            ("KIT".to_string(), "delete".to_string()),
        ]
    );
    assert_eq!(
        items[2]["components"],
        json!([{"sku": "C1", "qty": 1}, {"sku": "C2", "qty": 3}])
    );
    assert_eq!(items[3]["components"], json!([]));
    assert!(items.iter().all(|c| c["author"].is_string()));
    assert!(all["next_after"].is_null());

    let kit = app
        .get("/v1/kit-changes?kit=KIT&limit=2")
        .await
        .expect(200)
        .body;
    assert_eq!(kit["items"].as_array().unwrap().len(), 2);
    let after = kit["next_after"].as_i64().expect("a next page");
    let rest = app
        .get(&format!("/v1/kit-changes?kit=KIT&after={after}"))
        .await
        .expect(200)
        .body;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["action"], "delete");
    app.get("/v1/kit-changes?limit=0")
        .await
        .expect_error(400, "invalid_query");
}
