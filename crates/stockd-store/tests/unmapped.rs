//! Unmapped channel order changes are kept on every adapter: recorded once
//! per channel and dedup key, listed per channel in arrival order, taken once.

#[macro_use]
mod both_stores;

use chrono::{TimeZone, Utc};
use serde_json::json;
use stockd_core::ChannelId;
use stockd_store::unmapped::UnmappedChange;

use both_stores::Shared;

fn change(channel: &str, dedup_key: &str, item: &str) -> UnmappedChange {
    UnmappedChange {
        channel: ChannelId::parse(channel).unwrap(),
        dedup_key: dedup_key.to_string(),
        order_id: "1001".to_string(),
        kind: "placed".to_string(),
        item_keys: json!([[["variant_id", item]]]),
        change: json!({"dedup_key": dedup_key, "order_id": "1001", "kind": "placed",
            "lines": [{"line_id": "1", "keys": [["variant_id", item]], "qty": 2}]}),
        received_at: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
    }
}

async fn unmapped_changes_are_kept_once_listed_per_channel_and_taken_once(store: Shared) {
    let shop = ChannelId::parse("shop").unwrap();
    let first = store
        .record_unmapped(change("shop", "order:1001", "v-9"))
        .await
        .unwrap();
    // A redelivery keeps the first record.
    let mut again = change("shop", "order:1001", "v-other");
    again.order_id = "other".to_string();
    assert_eq!(store.record_unmapped(again).await.unwrap(), first);
    let second = store
        .record_unmapped(change("shop", "order:1002", "v-8"))
        .await
        .unwrap();
    store
        .record_unmapped(change("woo", "order:1001", "v-9"))
        .await
        .unwrap();

    let rows = store.unmapped(&shop, 0, 100).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(rows[0].change, change("shop", "order:1001", "v-9"));
    let page = store.unmapped(&shop, first, 100).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].change.dedup_key, "order:1002");
    assert_eq!(store.unmapped(&shop, 0, 1).await.unwrap().len(), 1);

    assert!(store.take_unmapped(first).await.unwrap());
    assert!(!store.take_unmapped(first).await.unwrap());
    let rows = store.unmapped(&shop, 0, 100).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [second]);
    let woo = ChannelId::parse("woo").unwrap();
    assert_eq!(store.unmapped(&woo, 0, 100).await.unwrap().len(), 1);
}

on_both_stores!(unmapped_changes_are_kept_once_listed_per_channel_and_taken_once);
