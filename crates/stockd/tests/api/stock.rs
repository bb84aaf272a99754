//! Stock views and paging, on both stores: totals over sellable locations,
//! oversold, pending returns and inbound; `/v1/stock` and `/v1/ledger` pages.

use crate::helpers::{on_both_stores, receipt, TestApp};
use serde_json::{json, Value};

on_both_stores!(
    stock_view_counts_sellable_locations_oversold_and_inbound,
    stock_pages_through_every_variant,
    ledger_pages_in_sequence_order,
);

/// One location of a stock view: (location, sellable, on_hand, reserved, available).
type LocationRow = (String, bool, i64, i64, i64);

/// The numbers of a stock view: totals, then per location.
fn numbers(view: &Value) -> (Vec<i64>, Vec<LocationRow>) {
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(i64::MIN);
    let totals = [
        "on_hand",
        "reserved",
        "available",
        "pending_return",
        "oversold",
    ]
    .iter()
    .map(|k| n(view, k))
    .collect();
    let locations = view["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap_or("").to_string(),
                l["sellable"].as_bool().unwrap_or(false),
                n(l, "on_hand"),
                n(l, "reserved"),
                n(l, "available"),
            )
        })
        .collect();
    (totals, locations)
}

fn loc(id: &str, sellable: bool, on_hand: i64, reserved: i64, available: i64) -> LocationRow {
    (id.to_string(), sellable, on_hand, reserved, available)
}

async fn stock_view_counts_sellable_locations_oversold_and_inbound(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.location("RTM", true, 2).await;
    app.location("QC", false, 0).await;
    app.variants(&["TEE-M"]).await;
    app.events(json!([
        receipt("r1", "TEE-M", "AMS", 5),
        receipt("r2", "TEE-M", "RTM", 2),
        receipt("r3", "TEE-M", "QC", 4),
        // 9 ordered, 7 available: AMS then RTM by priority, the shortfall at AMS.
        {"key": "o1", "type": "order", "channel": "bol", "order_id": "A-1",
         "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 9}]},
        {"key": "rr1", "type": "return_received", "rma_id": "RMA-1", "sku": "TEE-M", "location": "AMS", "qty": 1},
        {"key": "po1", "type": "inbound", "po_id": "PO-1", "sku": "TEE-M", "location": "AMS",
         "qty": 10, "eta": "2026-12-01", "confirmed": true},
    ]))
    .await;
    let view = app.stock("TEE-M").await;
    assert_eq!(
        numbers(&view),
        (
            vec![7, 9, 0, 1, 2],
            vec![
                loc("QC", false, 4, 0, 4),
                loc("AMS", true, 5, 7, 0),
                loc("RTM", true, 2, 2, 0)
            ]
        ),
        "{view}"
    );
    assert_eq!(
        view["inbound"],
        json!([{"po_id": "PO-1", "location": "AMS", "qty": 10, "eta": "2026-12-01", "confirmed": true}])
    );
    let ledger = app.get("/v1/ledger?sku=TEE-M").await.expect(200).body;
    let order = &ledger["items"][3];
    assert_eq!(order["key"], "o1");
    assert_eq!(order["notes"][0]["note"], "oversell");
    assert_eq!(order["notes"][0]["shortfall_qty"], 2);

    // Part of the PO arrives; the return is verified; stock covers the order again.
    app.events(json!([
        {"key": "pr1", "type": "inbound_received", "po_id": "PO-1", "sku": "TEE-M", "location": "AMS", "qty": 4},
        {"key": "rv1", "type": "return_verified", "rma_id": "RMA-1", "sku": "TEE-M", "location": "AMS",
         "sellable_qty": 1, "unsellable_qty": 0},
    ]))
    .await;
    let view = app.stock("TEE-M").await;
    assert_eq!(
        numbers(&view),
        (
            vec![12, 9, 3, 0, 0],
            vec![
                loc("QC", false, 4, 0, 4),
                loc("AMS", true, 10, 7, 3),
                loc("RTM", true, 2, 2, 0)
            ]
        ),
        "{view}"
    );
    assert_eq!(view["inbound"][0]["qty"], 6);

    app.get("/v1/stock/NOPE")
        .await
        .expect_error(404, "unknown_sku");
}

async fn stock_pages_through_every_variant(app: &TestApp) {
    let skus = ["E", "A", "D", "B", "C"];
    app.variants(&skus).await;
    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..10 {
        let page = app
            .get(&format!("/v1/stock?limit=2&after={after}"))
            .await
            .expect(200)
            .body;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["sku"].as_str().unwrap().to_string()));
        match page["next_after"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["A", "B", "C", "D", "E"]);
    let all = app.get("/v1/stock").await.expect(200).body;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["next_after"], Value::Null);
    assert_eq!(all["items"][0]["on_hand"], 0);

    for bad in ["limit=0", "limit=1001", "limit=x", "colour=red"] {
        app.get(&format!("/v1/stock?{bad}"))
            .await
            .expect_error(400, "invalid_query");
    }
}

async fn ledger_pages_in_sequence_order(app: &TestApp) {
    app.location("AMS", true, 1).await;
    app.variants(&["A", "B"]).await;
    let events: Vec<Value> = (0..5)
        .map(|i| {
            receipt(
                &format!("r{i}"),
                if i % 2 == 0 { "A" } else { "B" },
                "AMS",
                i + 1,
            )
        })
        .collect();
    app.events(Value::Array(events)).await;

    let mut keys = Vec::new();
    let mut after_seq = 0;
    for _ in 0..10 {
        let page = app
            .get(&format!("/v1/ledger?limit=2&after_seq={after_seq}"))
            .await
            .expect(200)
            .body;
        for item in page["items"].as_array().expect("items") {
            keys.push(item["key"].as_str().unwrap().to_string());
            assert_eq!(item["type"], "receipt");
            assert!(item["received_at"].is_string());
        }
        match page["next_after_seq"].as_u64() {
            Some(next) => after_seq = next,
            None => break,
        }
    }
    assert_eq!(keys, ["r0", "r1", "r2", "r3", "r4"]);

    let only_b = app.get("/v1/ledger?sku=B").await.expect(200).body;
    let keys: Vec<&str> = only_b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["r1", "r3"]);
    app.get("/v1/ledger?after_seq=-1")
        .await
        .expect_error(400, "invalid_query");
}
