//! Rules governance, on both stores: applying versions changes what listings
//! show, preview changes nothing, diff and rollback, the author, and 422s
//! that name the field.

use crate::channels::shop_and_bol;
use crate::helpers::{on_both_stores, receipt, token, TestApp};
use serde_json::{json, Value};
use stockd::auth::Role;

on_both_stores!(
    rules_change_listing_quantities,
    preview_changes_nothing,
    versions_diff_and_rollback,
    invalid_rules_name_their_fields,
    preallocation_partitions_a_low_pool,
);

/// `(channel, sku) → quantity` of every listing, via the channel pages.
async fn quantities(app: &TestApp) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for channel in ["bol", "shop"] {
        let page = app
            .get(&format!("/v1/channels/{channel}/listings"))
            .await
            .expect(200)
            .body;
        for item in page["items"].as_array().unwrap() {
            out.push((
                channel.to_string(),
                item["sku"].as_str().unwrap().to_string(),
                item["quantity"].as_i64().unwrap(),
            ));
        }
    }
    out
}

fn q(channel: &str, sku: &str, quantity: i64) -> (String, String, i64) {
    (channel.to_string(), sku.to_string(), quantity)
}

async fn ten_of_a(app: &TestApp) {
    shop_and_bol(app, &["A"]).await;
    app.events(json!([receipt("r1", "A", "AMS", 10)])).await;
}

async fn rules_change_listing_quantities(app: &TestApp) {
    ten_of_a(app).await;
    app.get("/v1/rules").await.expect_error(404, "no_rules");
    assert_eq!(
        quantities(app).await,
        [q("bol", "A", 10), q("shop", "A", 10)]
    );

    let applied = app
        .put(
            "/v1/rules",
            json!({"rules": {"defaults": {"safety_stock": 2},
                             "channels": {"bol": {"percent": 50, "max_exposed": 3}}},
                   "message": "protect bol"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(applied["version"], 1);
    assert_eq!(applied["author"], "anonymous");
    assert_eq!(applied["message"], "protect bol");
    assert!(applied["created_at"].is_string());
    assert_eq!(
        applied["summary"],
        json!({"listings": 2, "changed": 2, "increased": 0, "decreased": 2})
    );
    // shop: 10 − 2 = 8; bol: (10 − 2) × 50 % = 4, capped at 3.
    assert_eq!(quantities(app).await, [q("bol", "A", 3), q("shop", "A", 8)]);
    let page = app.get("/v1/channels/bol/listings").await.expect(200).body;
    assert_eq!(page["rules_version"], 1);
    let steps: Vec<(&str, &str)> = page["items"][0]["explain"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "rule")
        .map(|s| {
            (
                s["rule"].as_str().unwrap(),
                s["source"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("safety_stock", "default"),
            ("percent", "channel"),
            ("max_exposed", "channel"),
            ("min_listed", "builtin")
        ]
    );

    // An override by sku glob beats the channel; min_listed hides a small remainder.
    app.put(
        "/v1/rules",
        json!({"rules": {"defaults": {"safety_stock": 2, "min_listed": 9},
                         "overrides": [{"match": {"sku": "A*"}, "channels": ["bol"], "set": {"safety_stock": 0}}]},
               "message": "v2"}),
    )
    .await
    .expect(200);
    assert_eq!(
        quantities(app).await,
        [q("bol", "A", 10), q("shop", "A", 0)]
    );

    let active = app.get("/v1/rules").await.expect(200).body;
    assert_eq!(active["version"], 2);
    assert_eq!(
        active["rules"]["defaults"],
        json!({"safety_stock": 2, "min_listed": 9})
    );
}

async fn preview_changes_nothing(app: &TestApp) {
    ten_of_a(app).await;
    app.put(
        "/v1/rules",
        json!({"rules": {"defaults": {"safety_stock": 2}}, "message": "v1"}),
    )
    .await
    .expect(200);
    let before = quantities(app).await;
    let preview = app
        .post(
            "/v1/rules/preview",
            json!({"rules": {"channels": {"shop": {"max_exposed": 5}}}}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(preview["active_version"], 1);
    assert_eq!(
        preview["changes"],
        json!([
            {"channel": "bol", "sku": "A",
             "from": {"quantity": 8, "availability": "in_stock"},
             "to": {"quantity": 10, "availability": "in_stock"}},
            {"channel": "shop", "sku": "A",
             "from": {"quantity": 8, "availability": "in_stock"},
             "to": {"quantity": 5, "availability": "in_stock"}},
        ])
    );
    assert_eq!(
        preview["summary"],
        json!({"listings": 2, "changed": 2, "increased": 1, "decreased": 1})
    );
    assert_eq!(quantities(app).await, before);
    assert_eq!(app.get("/v1/rules").await.expect(200).body["version"], 1);
    let versions = app.get("/v1/rules/versions").await.expect(200).body;
    assert_eq!(versions["items"].as_array().unwrap().len(), 1);
    // An invalid preview is refused like a PUT.
    app.post(
        "/v1/rules/preview",
        json!({"rules": {"defaults": {"percent": 101}}}),
    )
    .await
    .expect_error(422, "invalid_rules");
}

async fn versions_diff_and_rollback(app: &TestApp) {
    ten_of_a(app).await;
    let v1 = json!({"channels": {"bol": {"percent": 80}}});
    app.put("/v1/rules", json!({"rules": v1, "message": "80 %"}))
        .await
        .expect(200);
    let at_v1 = quantities(app).await;
    assert_eq!(at_v1, [q("bol", "A", 8), q("shop", "A", 10)]);
    app.put(
        "/v1/rules",
        json!({"rules": {"channels": {"bol": {"percent": 50}}, "defaults": {"max_exposed": 7}},
               "message": "50 %"}),
    )
    .await
    .expect(200);
    assert_eq!(quantities(app).await, [q("bol", "A", 5), q("shop", "A", 7)]);

    let diff = app.get("/v1/rules/diff?from=1&to=2").await.expect(200).body;
    assert_eq!(
        diff["changes"],
        json!([
            {"path": "channels.bol.percent", "from": 80, "to": 50},
            {"path": "defaults.max_exposed", "from": null, "to": 7},
        ])
    );
    app.get("/v1/rules/diff?from=1&to=9")
        .await
        .expect_error(404, "unknown_rules_version");
    app.get("/v1/rules/diff?from=1")
        .await
        .expect_error(400, "invalid_query");

    let rolled = app
        .post(
            "/v1/rules/rollback",
            json!({"version": 1, "message": "back to 80 %"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(rolled["version"], 3);
    assert_eq!(
        rolled["summary"],
        json!({"listings": 2, "changed": 2, "increased": 2, "decreased": 0})
    );
    assert_eq!(
        quantities(app).await,
        at_v1,
        "rollback restores the exact quantities"
    );
    let active = app.get("/v1/rules").await.expect(200).body;
    assert_eq!(
        (
            active["version"].clone(),
            active["rules"]["channels"].clone()
        ),
        (json!(3), v1["channels"].clone())
    );
    assert_eq!(active["message"], "back to 80 %");
    let diff = app.get("/v1/rules/diff?from=1&to=3").await.expect(200).body;
    assert_eq!(diff["changes"], json!([]));

    let versions = app.get("/v1/rules/versions").await.expect(200).body;
    let listed: Vec<(u64, &str)> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(1, "80 %"), (2, "50 %"), (3, "back to 80 %")]);
    let v2 = app.get("/v1/rules/versions/2").await.expect(200).body;
    assert_eq!(v2["rules"]["channels"]["bol"]["percent"], 50);
    app.get("/v1/rules/versions/9")
        .await
        .expect_error(404, "unknown_rules_version");
    app.post("/v1/rules/rollback", json!({"version": 9, "message": "x"}))
        .await
        .expect_error(404, "unknown_rules_version");
    app.post("/v1/rules/rollback", json!({"version": 1}))
        .await
        .expect_error(422, "invalid_request");
}

/// `(field, code)` of every detail.
fn field_codes(body: &Value) -> Vec<(String, String)> {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap_or("").to_string(),
                d["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn fc(field: &str, code: &str) -> (String, String) {
    (field.to_string(), code.to_string())
}

async fn invalid_rules_name_their_fields(app: &TestApp) {
    ten_of_a(app).await;
    let put = |rules: Value| app.put("/v1/rules", json!({"rules": rules, "message": "m"}));
    let reply = put(json!({"channels": {"bol": {"percent": 150}, "ebay": {"safety_stock": -1}}}))
        .await
        .expect_error(422, "invalid_rules");
    assert_eq!(
        field_codes(&reply.body),
        [
            fc("channels.bol.percent", "percent_out_of_range"),
            fc("channels.ebay", "unknown_channel"),
            fc("channels.ebay.safety_stock", "negative_value"),
        ]
    );
    let reply = put(json!({"defaults": {"colour": 1}, "bogus": true,
                           "overrides": [{"match": {"sku": "A"}, "set": {"percent": "x"}}]}))
    .await
    .expect_error(422, "invalid_rules");
    assert_eq!(
        field_codes(&reply.body),
        [
            fc("bogus", "unparsable"),
            fc("defaults.colour", "unparsable"),
            fc("overrides[0].set.percent", "unparsable"),
        ]
    );
    assert!(
        reply.text.contains("unknown field `colour`"),
        "{}",
        reply.text
    );
    let reply = put(json!({"preallocation": {"low_stock_threshold": 3, "order": ["shop", "amz"]}}))
        .await
        .expect_error(422, "invalid_rules");
    assert_eq!(
        field_codes(&reply.body),
        [fc("preallocation.order[1]", "unknown_channel")]
    );
    app.put("/v1/rules", json!({"rules": {}}))
        .await
        .expect_error(422, "invalid_request");
    app.put("/v1/rules", json!({"message": "no rules"}))
        .await
        .expect_error(422, "invalid_request");
    // Nothing was stored.
    app.get("/v1/rules").await.expect_error(404, "no_rules");
}

async fn preallocation_partitions_a_low_pool(app: &TestApp) {
    shop_and_bol(app, &["A"]).await;
    app.events(json!([receipt("r1", "A", "AMS", 3)])).await;
    app.put(
        "/v1/rules",
        json!({"rules": {"preallocation": {"low_stock_threshold": 5, "order": ["bol", "shop"]},
                         "channels": {"bol": {"max_exposed": 2}}},
               "message": "partition"}),
    )
    .await
    .expect(200);
    // bol first gets its 2, shop the 1 left: never more than the pool in total.
    assert_eq!(quantities(app).await, [q("bol", "A", 2), q("shop", "A", 1)]);
    app.events(json!([receipt("r2", "A", "AMS", 10)])).await;
    assert_eq!(
        quantities(app).await,
        [q("bol", "A", 2), q("shop", "A", 13)]
    );
}

#[tokio::test]
async fn the_author_is_the_token_name() {
    let mut app = TestApp::sqlite_with(|config| {
        config.tokens = vec![
            token("ops", Role::Admin, "ops-secret"),
            token("reader", Role::Read, "read-secret"),
        ];
    })
    .await;
    app.token = Some("read-secret".to_string());
    app.put("/v1/rules", json!({"rules": {}, "message": "m"}))
        .await
        .expect_error(403, "forbidden");
    app.get("/v1/rules/versions").await.expect(200);
    app.token = Some("ops-secret".to_string());
    let applied = app
        .put("/v1/rules", json!({"rules": {}, "message": "first"}))
        .await
        .expect(200)
        .body;
    assert_eq!(applied["author"], "ops");
    let active = app.get("/v1/rules").await.expect(200).body;
    assert_eq!(active["author"], "ops");
    app.stop().await;
}
