//! Catalog scale on both stores: the start-up recompute of desired channel
//! states runs in pages behind the writer's requests, reports when it is
//! over, and repairs what it finds stale.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use stockd_core::{ChannelId, Event, EventInput, EventStatus, Location, LocationId, Sku};
use stockd_store::{submission, Store};

/// More SKUs than one recompute page, so the pass takes several.
const SKUS: usize = 2_500;

fn sku(i: usize) -> Sku {
    Sku::parse(format!("SKU-{i:05}")).unwrap()
}

async fn catalog(store: &Arc<dyn Store>) {
    // The start-up pass over the empty store ends first: a page of it run
    // between the listings and the rules below would leave fewer rows for
    // the refresh at the end to write.
    for _ in 0..400 {
        if store.recompute_done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(store.recompute_done(), "the start-up pass ends");
    store
        .upsert_location(Location {
            id: LocationId::parse("AMS").unwrap(),
            name: "Amsterdam".into(),
            sellable: true,
            priority: 1,
        })
        .await
        .unwrap();
    let skus: Vec<Sku> = (0..SKUS).map(sku).collect();
    stockd_store::test_support::list_on_shopify(&**store, "shop", &skus)
        .await
        .unwrap();
    let mut doc = stockd_core::rules::RulesDocument::default();
    doc.defaults.safety_stock = Some(1);
    store
        .add_rules_version(doc, "safety".into(), "ops".into())
        .await
        .unwrap();
    assert_eq!(store.refresh_desired(None).await.unwrap(), SKUS);
}

async fn receipt(store: &Arc<dyn Store>, key: &str, i: usize, qty: i64) {
    let input: EventInput = serde_json::from_value(json!({
        "key": key, "type": "receipt", "sku": sku(i).as_str(), "location": "AMS", "qty": qty
    }))
    .unwrap();
    let results = store
        .submit(vec![submission(Event::validate(&input).unwrap())])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results[0].status, EventStatus::Applied);
}

async fn rows_with_version(store: &Arc<dyn Store>, version: Option<u32>) -> usize {
    let rows = store.outbox(None, None, false, 10_000).await.unwrap();
    assert_eq!(rows.len(), SKUS);
    rows.iter().filter(|r| r.rules_version == version).count()
}

/// Stale stored states (as a crash or an old version could leave them) are
/// recomputed by the background pass after a restart; events apply while it
/// runs, and `recompute_done` says when it is over.
async fn start_up_recompute_runs_behind_events(
    url: &str,
    forget_versions: impl std::future::Future<Output = ()>,
) {
    let store = stockd_store::open(url).await.unwrap();
    catalog(&store).await;
    receipt(&store, "r1", 7, 5).await;
    assert_eq!(rows_with_version(&store, Some(1)).await, SKUS);
    store.close().await;

    forget_versions.await;

    let store = stockd_store::open(url).await.unwrap();
    // The writer takes events before the pass is over.
    receipt(&store, "r2", SKUS - 1, 3).await;
    for _ in 0..400 {
        if store.recompute_done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(store.recompute_done(), "the start-up recompute ends");
    assert_eq!(
        rows_with_version(&store, Some(1)).await,
        SKUS,
        "all repaired"
    );
    let last = store
        .outbox_rows(&ChannelId::parse("shop").unwrap(), &[sku(SKUS - 1)])
        .await
        .unwrap();
    assert_eq!(last[0].desired.quantity, 2, "{:?}", last[0].desired);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_start_up_recompute_runs_behind_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stockd.db");
    let url = format!("sqlite://{}", path.display());
    start_up_recompute_runs_behind_events(&url, async {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE listing_state SET rules_version = NULL", [])
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_start_up_recompute_runs_behind_events() {
    let Some(url) = stockd_store::test_support::fresh_postgres_url("scale_start").await else {
        return;
    };
    start_up_recompute_runs_behind_events(&url, async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .execute("UPDATE listing_state SET rules_version = NULL", &[])
            .await
            .unwrap();
    })
    .await;
}
