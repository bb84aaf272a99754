//! Quarantine, on both stores: an event naming an unknown SKU or location is
//! kept, listed at `GET /v1/quarantine`, replayed when the variant or location
//! is created (then visible in stock and ledger), or discarded by an admin.

use crate::helpers::{on_both_stores, receipt, statuses, TestApp};
use serde_json::json;

on_both_stores!(
    unknown_sku_waits_until_the_variant_is_put,
    unknown_location_waits_until_the_location_is_put,
    discarding_frees_the_key,
);

async fn quarantine_keys(app: &TestApp) -> Vec<(String, String)> {
    let page = app.get("/v1/quarantine").await.expect(200).body;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["key"].as_str().unwrap_or("").to_string(),
                item["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn unknown_sku_waits_until_the_variant_is_put(app: &TestApp) {
    app.location("AMS", true, 1).await;
    let results = app.events(receipt("q1", "NEW-SKU", "AMS", 4)).await;
    assert_eq!(statuses(&results), [("quarantined".to_string(), None)]);
    assert!(
        results[0]["reason"].as_str().unwrap().contains("NEW-SKU"),
        "{results:?}"
    );
    assert_eq!(
        quarantine_keys(app).await,
        [("q1".to_string(), "unknown sku NEW-SKU".to_string())]
    );
    app.get("/v1/stock/NEW-SKU")
        .await
        .expect_error(404, "unknown_sku");
    // Sent again: a duplicate of the quarantined result, not a second entry.
    let again = app.events(receipt("q1", "NEW-SKU", "AMS", 4)).await;
    assert_eq!(statuses(&again), [("duplicate".to_string(), None)]);

    let put = app
        .put("/v1/variants/NEW-SKU", json!({"title": "New"}))
        .await
        .expect(200);
    assert_eq!(put.body["replayed"], 1);
    assert!(quarantine_keys(app).await.is_empty());
    assert_eq!(app.stock("NEW-SKU").await["on_hand"], 4);
    let ledger = app.get("/v1/ledger?sku=NEW-SKU").await.expect(200).body;
    let items = ledger["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{ledger}");
    assert_eq!(items[0]["key"], "q1");
    assert_eq!(items[0]["changes"][0]["on_hand"], 4);
    // Now it reports as applied, with the seq the replay got.
    let after = app.events(receipt("q1", "NEW-SKU", "AMS", 4)).await;
    assert_eq!(
        statuses(&after),
        [("duplicate".to_string(), items[0]["seq"].as_u64())]
    );
}

async fn unknown_location_waits_until_the_location_is_put(app: &TestApp) {
    app.variants(&["TEE-M"]).await;
    let results = app
        .events(json!([
            receipt("q1", "TEE-M", "RTM", 3),
            receipt("q2", "TEE-M", "RTM", 2)
        ]))
        .await;
    assert_eq!(results[0]["status"], "quarantined");
    assert_eq!(results[1]["status"], "quarantined");
    assert_eq!(quarantine_keys(app).await.len(), 2);

    let put = app
        .put(
            "/v1/locations/RTM",
            json!({"name": "Rotterdam", "sellable": true, "priority": 2}),
        )
        .await
        .expect(200);
    assert_eq!(put.body["replayed"], 2);
    assert!(quarantine_keys(app).await.is_empty());
    let stock = app.stock("TEE-M").await;
    assert_eq!(stock["on_hand"], 5);
    assert_eq!(stock["locations"][0]["location"], "RTM");
    let ledger = app.get("/v1/ledger?sku=TEE-M").await.expect(200).body;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2);
}

async fn discarding_frees_the_key(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.events(receipt("q1", "GONE", "AMS", 1)).await;
    let page = app.get("/v1/quarantine").await.expect(200).body;
    let id = page["items"][0]["id"].as_i64().expect("id");
    app.delete(&format!("/v1/quarantine/{id}"))
        .await
        .expect(204);
    app.delete(&format!("/v1/quarantine/{id}"))
        .await
        .expect_error(404, "unknown_quarantine_entry");
    app.delete("/v1/quarantine/not-a-number")
        .await
        .expect_error(404, "unknown_quarantine_entry");
    assert!(quarantine_keys(app).await.is_empty());
    // The key is free again, even for another payload.
    app.variants(&["TEE-M"]).await;
    let results = app.events(receipt("q1", "TEE-M", "AMS", 1)).await;
    assert_eq!(results[0]["status"], "applied");
}
