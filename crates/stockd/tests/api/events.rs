//! The events contract of `POST /v1/events`, on both stores: applied once,
//! duplicates, 409 key reuse, 422 invalid events and ledger refusals (nothing
//! of the batch applied), 400 malformed JSON, unknown fields named.

use crate::helpers::{on_both_stores, receipt, statuses, TestApp};
use serde_json::{json, Value};

on_both_stores!(
    events_apply_once_and_duplicates_repeat_the_result,
    key_reuse_is_409_and_applies_nothing,
    invalid_events_are_422_with_details_and_apply_nothing,
    malformed_json_is_400,
    unknown_fields_are_named,
    refused_events_are_422_with_their_code_and_apply_nothing,
);

async fn catalog(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.variants(&["TEE-M", "TEE-L"]).await;
}

async fn on_hand(app: &TestApp, sku: &str) -> i64 {
    app.stock(sku).await["on_hand"].as_i64().expect("on_hand")
}

async fn events_apply_once_and_duplicates_repeat_the_result(app: &TestApp) {
    catalog(app).await;
    let batch = json!([
        receipt("r1", "TEE-M", "AMS", 5),
        receipt("r2", "TEE-M", "AMS", 3)
    ]);
    let first = app.events(batch.clone()).await;
    let seqs: Vec<u64> = first
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(statuses(&first)[0].0, "applied");
    assert_eq!(statuses(&first)[1].0, "applied");
    assert_eq!(
        seqs[1],
        seqs[0] + 1,
        "consecutive sequence numbers: {first:?}"
    );
    assert_eq!(first[0]["key"], "r1");
    assert!(first[0].get("reason").is_none(), "no reason when applied");

    // Same keys, same payloads (other field order, spacing): duplicates with the original seq.
    let again = app
        .events(json!([
            {"qty": 5, "location": "AMS", "sku": "TEE-M", "type": "receipt", "key": "r1"},
            receipt("r2", "TEE-M", "AMS", 3)
        ]))
        .await;
    assert_eq!(
        statuses(&again),
        [
            ("duplicate".to_string(), Some(seqs[0])),
            ("duplicate".to_string(), Some(seqs[1]))
        ]
    );
    assert_eq!(on_hand(app, "TEE-M").await, 8);

    // A single object is a batch of one.
    let one = app.events(receipt("r3", "TEE-L", "AMS", 2)).await;
    assert_eq!(statuses(&one), [("applied".to_string(), Some(seqs[1] + 1))]);
    assert_eq!(on_hand(app, "TEE-L").await, 2);
}

async fn key_reuse_is_409_and_applies_nothing(app: &TestApp) {
    catalog(app).await;
    app.events(receipt("r1", "TEE-M", "AMS", 5)).await;
    let reply = app
        .post(
            "/v1/events",
            json!([
                receipt("r2", "TEE-L", "AMS", 1),
                receipt("r1", "TEE-M", "AMS", 6)
            ]),
        )
        .await
        .expect_error(409, "idempotency_key_reused");
    assert_eq!(reply.detail_fields(), [(1, "key".to_string())]);
    assert_eq!(reply.body["error"]["details"][0]["key"], "r1");
    assert_eq!(on_hand(app, "TEE-M").await, 5);
    assert_eq!(on_hand(app, "TEE-L").await, 0);
    // r2 was not recorded: it applies now.
    let results = app.events(receipt("r2", "TEE-L", "AMS", 1)).await;
    assert_eq!(results[0]["status"], "applied");
}

async fn invalid_events_are_422_with_details_and_apply_nothing(app: &TestApp) {
    catalog(app).await;
    let check = |batch: Value, expect: &'static [(u64, &'static str)]| async move {
        let reply = app
            .post("/v1/events", batch)
            .await
            .expect_error(422, "invalid_event");
        let expect: Vec<(u64, String)> = expect.iter().map(|(i, f)| (*i, f.to_string())).collect();
        assert_eq!(reply.detail_fields(), expect, "{}", reply.text);
    };
    check(
        json!([
            receipt("ok", "TEE-M", "AMS", 1),
            {"key": "no-qty", "type": "receipt", "sku": "TEE-M", "location": "AMS"},
            {"key": "bad-type", "type": "teleport"},
            {"key": "bad-line", "type": "order", "order_id": "1",
             "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 0}]},
        ]),
        &[(1, "qty"), (2, "type"), (3, "lines[0].qty")],
    )
    .await;
    check(
        json!([{"type": "adjust", "sku": "TEE-M", "location": "AMS", "delta": 0}]),
        &[(0, "key"), (0, "delta"), (0, "reason")],
    )
    .await;
    check(
        json!({"key": "k", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1, "delta": 1}),
        &[(0, "delta")],
    )
    .await;
    check(json!([receipt("ok", "TEE-M", "AMS", 1), 42]), &[(1, "")]).await;
    // Nothing of those batches was applied, and the valid event's key is still free.
    assert_eq!(on_hand(app, "TEE-M").await, 0);
    let results = app.events(receipt("ok", "TEE-M", "AMS", 1)).await;
    assert_eq!(results[0]["status"], "applied");

    app.post("/v1/events", json!([]))
        .await
        .expect_error(422, "invalid_event");
    app.post("/v1/events", json!("receipt"))
        .await
        .expect_error(422, "invalid_event");
    let too_many = Value::Array(vec![receipt("same", "TEE-M", "AMS", 1); 10_001]);
    app.post("/v1/events", too_many)
        .await
        .expect_error(422, "too_many_events");
}

async fn malformed_json_is_400(app: &TestApp) {
    for body in ["{\"key\": ", "not json", "", "[1,]"] {
        app.send(
            "POST",
            "/v1/events",
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await
        .expect_error(400, "malformed_json");
    }
}

async fn unknown_fields_are_named(app: &TestApp) {
    catalog(app).await;
    let reply = app
        .post(
            "/v1/events",
            json!({"key": "k", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1, "colour": "red"}),
        )
        .await
        .expect_error(422, "invalid_event");
    assert_eq!(reply.detail_fields(), [(0, "colour".to_string())]);
    let message = reply.body["error"]["details"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("unknown field `colour`"), "{message}");

    let reply = app
        .put(
            "/v1/variants/TEE-M",
            json!({"title": "Tee", "colour": "red"}),
        )
        .await
        .expect_error(422, "invalid_variant");
    assert_eq!(reply.detail_fields(), [(0, "colour".to_string())]);
    let reply = app
        .put(
            "/v1/locations/AMS",
            json!({"name": "x", "city": "Amsterdam"}),
        )
        .await
        .expect_error(422, "invalid_location");
    assert_eq!(reply.detail_fields(), [(0, "city".to_string())]);
}

async fn refused_events_are_422_with_their_code_and_apply_nothing(app: &TestApp) {
    catalog(app).await;
    app.events(json!([
        receipt("r1", "TEE-M", "AMS", 10),
        {"key": "o1", "type": "order", "channel": "shop", "order_id": "1001",
         "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}]}
    ]))
    .await;
    let reply = app
        .post(
            "/v1/events",
            json!([
                receipt("r2", "TEE-M", "AMS", 5),
                {"key": "s1", "type": "ship", "channel": "shop", "order_id": "1001",
                 "lines": [{"line_id": "1", "qty": 3}]}
            ]),
        )
        .await
        .expect_error(422, "reservation_exceeded");
    assert_eq!(reply.detail_fields(), [(1, "lines".to_string())]);
    let stock = app.stock("TEE-M").await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(10), Some(2))
    );

    let reply = app
        .post(
            "/v1/events",
            json!({"key": "a1", "type": "adjust", "sku": "TEE-M", "location": "AMS", "delta": -11, "reason": "damaged"}),
        )
        .await
        .expect_error(422, "negative_on_hand");
    assert_eq!(reply.detail_fields(), [(0, "delta".to_string())]);

    // Shipping what is reserved works; both on_hand and reserved drop.
    app.events(json!({"key": "s2", "type": "ship", "channel": "shop", "order_id": "1001"}))
        .await;
    let stock = app.stock("TEE-M").await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64()),
        (Some(8), Some(0))
    );
}
