//! Returns per RMA and the quantity bound, through the HTTP API on both
//! stores: an RMA received in two parts and verified by its id alone,
//! over-verification and verification before receipt; `/v1/returns`; an
//! adjust by i64::MIN refused with nothing changed.

use crate::helpers::{on_both_stores, receipt, TestApp};
use serde_json::json;

on_both_stores!(
    an_rma_is_received_in_parts_and_verified_by_its_id,
    an_adjust_by_i64_min_is_refused_and_changes_nothing,
);

async fn an_rma_is_received_in_parts_and_verified_by_its_id(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.variants(&["TEE-M", "TEE-L"]).await;
    app.events(json!([
        {"key": "r1", "type": "return_received", "rma_id": "RMA-1", "sku": "TEE-M", "location": "AMS", "qty": 1},
        {"key": "r2", "type": "return_received", "rma_id": "RMA-1", "sku": "TEE-M", "location": "AMS", "qty": 2},
        {"key": "r3", "type": "return_received", "rma_id": "RMA-1", "sku": "TEE-L", "location": "AMS", "qty": 1},
    ]))
    .await;
    // Verified before it was received: waits in quarantine.
    let early = app
        .events(
            json!({"key": "v2", "type": "return_verified", "rma_id": "RMA-2", "sellable_qty": 1}),
        )
        .await;
    assert_eq!(early[0]["status"], "quarantined", "{early:?}");
    // More than is pending: refused, nothing applied.
    app.post(
        "/v1/events",
        json!({"key": "v0", "type": "return_verified", "rma_id": "RMA-1", "sellable_qty": 5}),
    )
    .await
    .expect_error(422, "return_exceeded");
    let open = app.get("/v1/returns?status=open").await.expect(200).body;
    assert_eq!(open["items"][0]["rma_id"], "RMA-1");
    assert_eq!(open["items"][0]["pending_qty"], 4);
    assert_eq!(open["items"][0]["lines"][0]["received_qty"], 3);

    app.events(
        json!({"key": "v1", "type": "return_verified", "rma_id": "RMA-1",
                       "sellable_qty": 3, "unsellable_qty": 1}),
    )
    .await;
    let rma = app.get("/v1/returns/RMA-1").await.expect(200).body;
    assert_eq!(rma["status"], "closed", "{rma}");
    assert_eq!(
        (rma["sellable_qty"].as_i64(), rma["pending_qty"].as_i64()),
        (Some(3), Some(0))
    );
    let stock = app.stock("TEE-M").await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["pending_return"].as_i64()),
        (Some(3), Some(0))
    );

    // RMA-2 arrives: the waiting verification applies.
    app.events(json!({"key": "r4", "type": "return_received", "rma_id": "RMA-2", "sku": "TEE-L", "location": "AMS", "qty": 1}))
        .await;
    let rma = app.get("/v1/returns/RMA-2").await.expect(200).body;
    assert_eq!(rma["status"], "closed", "{rma}");
    let open = app.get("/v1/returns?status=open").await.expect(200).body;
    assert_eq!(open["items"], json!([]));
    app.get("/v1/returns/NOPE")
        .await
        .expect_error(404, "unknown_rma");
    app.get("/v1/returns?status=lost")
        .await
        .expect_error(400, "invalid_query");
}

async fn an_adjust_by_i64_min_is_refused_and_changes_nothing(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.variants(&["TEE-M"]).await;
    app.events(json!([
        receipt("in", "TEE-M", "AMS", 2),
        {"key": "o", "type": "order", "order_id": "1", "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 5}]},
        {"key": "s", "type": "ship", "order_id": "1"},
    ]))
    .await;
    let before = app.stock("TEE-M").await;
    assert_eq!(before["on_hand"], -3, "{before}");
    let reply = app
        .post(
            "/v1/events",
            json!({"type": "adjust", "key": "min", "sku": "TEE-M", "location": "AMS",
                   "delta": i64::MIN, "reason": "x"}),
        )
        .await
        .expect_error(422, "invalid_event");
    assert_eq!(reply.detail_fields()[0].1, "delta");
    assert_eq!(app.stock("TEE-M").await, before);
    let ledger = app.get("/v1/ledger?sku=TEE-M").await.expect(200).body;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn duplicate_json_members_are_malformed_json() {
    let app = TestApp::sqlite().await;
    app.location("AMS", true, 1).await;
    app.variants(&["TEE-M"]).await;
    let body = br#"{"key": "d", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1, "qty": 500}"#;
    app.send(
        "POST",
        "/v1/events",
        Some(("application/json", body.to_vec())),
    )
    .await
    .expect_error(400, "malformed_json");
    assert_eq!(app.stock("TEE-M").await["on_hand"], 0);
    app.stop().await;
}
