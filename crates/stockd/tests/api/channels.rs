//! Channels and listings, on both stores: the round trip with computed
//! quantities following receipts and orders, paging, errors, ETA backorder
//! and the channels of the stock view.

use crate::helpers::{on_both_stores, receipt, TestApp};
use serde_json::{json, Value};

on_both_stores!(
    channels_and_listings_round_trip,
    listings_are_refused_whole,
    backorder_shows_with_a_confirmed_inbound,
);

/// `(sku, quantity, availability)` of a listings page.
fn shown(page: &Value) -> Vec<(String, i64, String)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["sku"].as_str().unwrap_or("").to_string(),
                i["quantity"].as_i64().unwrap_or(i64::MIN),
                i["availability"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn row(sku: &str, quantity: i64, availability: &str) -> (String, i64, String) {
    (sku.to_string(), quantity, availability.to_string())
}

/// Two sellable locations (AMS first), channels `shop` (every location) and
/// `bol` (AMS only), variants `skus` listed on both.
pub async fn shop_and_bol(app: &TestApp, skus: &[&str]) {
    app.location("AMS", true, 1).await;
    app.location("RTM", true, 2).await;
    app.variants(skus).await;
    app.put("/v1/channels/shop", json!({"kind": "shopify"}))
        .await
        .expect(200);
    app.put(
        "/v1/channels/bol",
        json!({"kind": "bol", "locations": ["AMS"]}),
    )
    .await
    .expect(200);
    let items: Vec<Value> = skus.iter().map(|s| json!({"sku": s})).collect();
    for channel in ["shop", "bol"] {
        app.post(
            &format!("/v1/channels/{channel}/listings"),
            Value::Array(items.clone()),
        )
        .await
        .expect(200);
    }
}

async fn channels_and_listings_round_trip(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.location("RTM", true, 2).await;
    app.variants(&["A", "B"]).await;
    let shop = app
        .put("/v1/channels/shop", json!({"kind": "shopify"}))
        .await
        .expect(200)
        .body;
    assert_eq!(
        shop,
        json!({"id": "shop", "kind": "shopify", "locations": null, "enabled": true})
    );
    app.put(
        "/v1/channels/bol",
        json!({"kind": "bol", "locations": ["AMS"]}),
    )
    .await
    .expect(200);
    let reply = app
        .put(
            "/v1/channels/amz",
            json!({"kind": "amazon", "locations": ["AMS", "NOWHERE"]}),
        )
        .await
        .expect_error(422, "unknown_location");
    assert_eq!(reply.detail_fields(), [(0, "locations[1]".to_string())]);
    let reply = app
        .put("/v1/channels/amz", json!({"kind": "amazon", "colour": 1}))
        .await
        .expect_error(422, "invalid_channel");
    assert_eq!(reply.detail_fields(), [(0, "colour".to_string())]);
    let reply = app
        .put("/v1/channels/amz", json!({"kind": "ebay"}))
        .await
        .expect_error(422, "invalid_channel");
    assert_eq!(reply.detail_fields(), [(0, "kind".to_string())]);
    let list = app.get("/v1/channels").await.expect(200).body;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bol", "shop"]);
    assert_eq!(
        app.get("/v1/channels/bol").await.expect(200).body["locations"],
        json!(["AMS"])
    );
    app.get("/v1/channels/nope")
        .await
        .expect_error(404, "unknown_channel");

    let ingested = app
        .post(
            "/v1/channels/shop/listings",
            json!([{"sku": "A", "external": {"inventory_item_id": "gid://1"}}, {"sku": "B", "rank": 1}]),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(ingested, json!({"upserted": 2}));
    app.post("/v1/channels/bol/listings", json!([{"sku": "A"}]))
        .await
        .expect(200);

    // Nothing yet: everything is out of stock.
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(page["rules_version"], Value::Null);
    assert_eq!(
        shown(&page),
        [row("A", 0, "out_of_stock"), row("B", 0, "out_of_stock")]
    );
    assert_eq!(
        page["items"][0]["external"],
        json!({"inventory_item_id": "gid://1"})
    );
    assert_eq!(page["items"][1]["rank"], 1);

    app.events(json!([
        receipt("r1", "A", "AMS", 5),
        receipt("r2", "A", "RTM", 3),
        {"key": "o1", "type": "order", "channel": "shop", "order_id": "1",
         "lines": [{"line_id": "1", "sku": "A", "qty": 2}]},
    ]))
    .await;
    // shop counts AMS (5 − 2) and RTM (3); bol only AMS.
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(
        shown(&page),
        [row("A", 6, "in_stock"), row("B", 0, "out_of_stock")]
    );
    let explain = &page["items"][0]["explain"];
    assert_eq!(explain[0]["step"], "pool");
    assert_eq!(explain[0]["pool"], 6);
    let bol = app.get("/v1/channels/bol/listings").await.expect(200).body;
    assert_eq!(shown(&bol), [row("A", 3, "in_stock")]);

    // Paging.
    let first = app
        .get("/v1/channels/shop/listings?limit=1")
        .await
        .expect(200)
        .body;
    assert_eq!(shown(&first), [row("A", 6, "in_stock")]);
    assert_eq!(first["next_after"], "A");
    let second = app
        .get("/v1/channels/shop/listings?limit=1&after=A")
        .await
        .expect(200)
        .body;
    assert_eq!(shown(&second), [row("B", 0, "out_of_stock")]);
    app.get("/v1/channels/shop/listings?limit=0")
        .await
        .expect_error(400, "invalid_query");

    // The stock view shows every channel listing the variant; the rest is unchanged.
    let view = app.stock("A").await;
    assert_eq!(
        (view["on_hand"].as_i64(), view["reserved"].as_i64()),
        (Some(8), Some(2))
    );
    let channels: Vec<(&str, i64, &str)> = view["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap(),
                c["quantity"].as_i64().unwrap(),
                c["availability"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(channels, [("bol", 3, "in_stock"), ("shop", 6, "in_stock")]);
    assert!(view["channels"][0]["explain"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    assert_eq!(app.stock("B").await["channels"][0]["quantity"], 0);

    // A disabled channel shows nothing computed and does not appear in the stock view.
    app.put("/v1/channels/bol", json!({"kind": "bol", "enabled": false}))
        .await
        .expect(200);
    let bol = app.get("/v1/channels/bol/listings").await.expect(200).body;
    assert_eq!(bol["items"][0]["quantity"], Value::Null);
    assert_eq!(
        app.stock("A").await["channels"].as_array().unwrap().len(),
        1
    );
}

async fn listings_are_refused_whole(app: &TestApp) {
    app.variants(&["A"]).await;
    app.put("/v1/channels/shop", json!({"kind": "woocommerce"}))
        .await
        .expect(200);
    app.post("/v1/channels/nope/listings", json!([{"sku": "A"}]))
        .await
        .expect_error(404, "unknown_channel");
    let reply = app
        .post(
            "/v1/channels/shop/listings",
            json!([{"sku": "A"}, {"sku": "GHOST"}, {"sku": "PHANTOM"}]),
        )
        .await
        .expect_error(422, "unknown_sku");
    assert_eq!(
        reply.detail_fields(),
        [(1, "sku".to_string()), (2, "sku".to_string())]
    );
    let reply = app
        .post(
            "/v1/channels/shop/listings",
            json!([{"sku": "A", "rank": "first"}, {"external": {}}, {"sku": "A"}]),
        )
        .await
        .expect_error(422, "invalid_listing");
    assert_eq!(
        reply.detail_fields(),
        [(0, "rank".to_string()), (1, "sku".to_string())]
    );
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(page["items"], json!([]), "nothing was applied");
}

async fn backorder_shows_with_a_confirmed_inbound(app: &TestApp) {
    shop_and_bol(app, &["C"]).await;
    let today = chrono::Utc::now().date_naive();
    let soon = (today + chrono::Duration::days(5)).to_string();
    let later = (today + chrono::Duration::days(3)).to_string();
    app.events(json!([
        {"key": "po1", "type": "inbound", "po_id": "PO-1", "sku": "C", "location": "AMS",
         "qty": 10, "eta": soon, "confirmed": true},
        // Sooner, but unconfirmed: never shows.
        {"key": "po2", "type": "inbound", "po_id": "PO-2", "sku": "C", "location": "AMS",
         "qty": 10, "eta": later, "confirmed": false},
    ]))
    .await;
    // Without an eta rule nothing shows.
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(shown(&page), [row("C", 0, "out_of_stock")]);

    app.put(
        "/v1/rules",
        json!({"rules": {"eta": {"backorder_within_days": 14, "handling_days": [1, 3]}},
               "message": "show backorders"}),
    )
    .await
    .expect(200);
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(shown(&page), [row("C", 0, "backorder")]);
    let item = &page["items"][0];
    assert_eq!(item["eta"], json!(soon));
    assert_eq!(item["ship_window_days"], json!([6, 8]));
    let explain = item["explain"].as_array().unwrap();
    assert_eq!(explain.last().unwrap()["step"], "eta");
    assert_eq!(explain.last().unwrap()["po_id"], "PO-1");
    assert_eq!(page["rules_version"], 1);
    // bol cannot show backorders.
    let bol = app.get("/v1/channels/bol/listings").await.expect(200).body;
    assert_eq!(shown(&bol), [row("C", 0, "out_of_stock")]);

    // Received goods go live.
    app.events(json!([
        {"key": "pr1", "type": "inbound_received", "po_id": "PO-1", "sku": "C", "location": "AMS", "qty": 4},
    ]))
    .await;
    let page = app.get("/v1/channels/shop/listings").await.expect(200).body;
    assert_eq!(shown(&page), [row("C", 4, "in_stock")]);
    assert_eq!(page["items"][0]["eta"], Value::Null);
}
