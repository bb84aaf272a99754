//! Reconciliation runs in the store, on every adapter: a run's progress
//! commits page by page and reads back the same; queueing a drifting listing
//! again applies only to a row still as the run saw it.

use chrono::{Duration, Utc};
use serde_json::json;
use std::sync::Arc;
use stockd_core::{ChannelId, Location, LocationId, Sku, Variant};
use stockd_store::outbox::OutboxUpdate;
use stockd_store::reconcile::{ClassCounts, DriftClass, PageProgress, Requeue, RunItem, RunStatus};
use stockd_store::{ChannelKind, ChannelRecord, ListingRecord, Store};

type Shared = Arc<dyn Store>;

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn ch(s: &str) -> ChannelId {
    ChannelId::parse(s).unwrap()
}

fn item(s: &str, class: DriftClass) -> RunItem {
    RunItem {
        sku: s.to_string(),
        class,
        expected: Some(json!({"quantity": 4})),
        observed: Some(json!({"quantity": 0})),
        fixed: class == DriftClass::ChannelDiffers,
        note: None,
    }
}

async fn runs_commit_progress_page_by_page(store: Shared) {
    let now = Utc::now();
    let a = store
        .recon_create(&ch("shop"), "api", true, now)
        .await
        .unwrap();
    let b = store
        .recon_create(&ch("bol"), "schedule", false, now)
        .await
        .unwrap();
    assert_eq!(a.status, RunStatus::Queued);
    assert!(!b.auto_fix);
    let open = store.recon_open().await.unwrap();
    assert_eq!(
        open.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );

    store.recon_start(a.id, 4, now).await.unwrap();
    let mut counts = ClassCounts::default();
    counts.add(DriftClass::InSync, 1);
    counts.add(DriftClass::ChannelDiffers, 1);
    store
        .recon_progress(
            a.id,
            PageProgress {
                checked: 2,
                counts,
                fixed: 1,
                channel_requests: 1,
                cursor: Some(sku("B")),
                items: vec![item("B", DriftClass::ChannelDiffers)],
            },
        )
        .await
        .unwrap();
    let mid = store.recon_run(a.id).await.unwrap().unwrap();
    assert_eq!(mid.status, RunStatus::Running);
    assert_eq!(mid.cursor, Some(sku("B")));
    assert_eq!(mid.checked, 2);
    // A resumed start keeps the first start time.
    store
        .recon_start(a.id, 4, now + Duration::seconds(5))
        .await
        .unwrap();
    let mut counts = ClassCounts::default();
    counts.add(DriftClass::MissingOnChannel, 1);
    counts.add(DriftClass::Pending, 1);
    store
        .recon_progress(
            a.id,
            PageProgress {
                checked: 2,
                counts,
                fixed: 0,
                channel_requests: 2,
                cursor: Some(sku("D")),
                items: vec![
                    item("C", DriftClass::MissingOnChannel),
                    item("D", DriftClass::Pending),
                ],
            },
        )
        .await
        .unwrap();
    store
        .recon_finish(a.id, RunStatus::Completed, None, now)
        .await
        .unwrap();
    let done = store.recon_run(a.id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        done.started_at.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis())
    );
    assert_eq!(done.checked, 4);
    assert_eq!(done.counts.drift(), 2);
    assert_eq!(done.fixed, 1);
    assert_eq!(done.channel_requests, 3);
    assert!((done.drift_rate() - 0.5).abs() < 1e-9);

    let all = store.recon_items(a.id, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.sku.as_str()).collect::<Vec<_>>(),
        ["B", "C", "D"]
    );
    assert_eq!(all[0].observed, Some(json!({"quantity": 0})));
    assert!(all[0].fixed);
    let missing = store
        .recon_items(a.id, Some(DriftClass::MissingOnChannel), None, 10)
        .await
        .unwrap();
    assert_eq!(missing.len(), 1);
    let after_b = store.recon_items(a.id, None, Some("B"), 1).await.unwrap();
    assert_eq!(after_b[0].sku, "C");

    assert_eq!(
        store
            .recon_open()
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![b.id]
    );
    let listed = store.recon_runs(None, None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![b.id, a.id]
    );
    let of_shop = store.recon_runs(Some(&ch("shop")), None, 10).await.unwrap();
    assert_eq!(of_shop.len(), 1);
    let older = store.recon_runs(None, Some(b.id), 10).await.unwrap();
    assert_eq!(older.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
    let latest = store.recon_latest().await.unwrap();
    assert_eq!(latest.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
    assert!(store.recon_run(a.id + 1000).await.unwrap().is_none());
}

async fn requeue_applies_only_to_a_row_as_seen(store: Shared) {
    store
        .upsert_location(Location {
            id: LocationId::parse("AMS").unwrap(),
            name: "AMS".into(),
            sellable: true,
            priority: 1,
        })
        .await
        .unwrap();
    store
        .upsert_variants(vec![Variant {
            sku: sku("TEE"),
            title: None,
            product_id: None,
            gtin: None,
        }])
        .await
        .unwrap();
    store
        .upsert_channel(ChannelRecord {
            id: ch("shop"),
            kind: ChannelKind::Shopify,
            locations: None,
            enabled: true,
        })
        .await
        .unwrap();
    store
        .upsert_listings(vec![ListingRecord {
            channel: ch("shop"),
            sku: sku("TEE"),
            external: serde_json::from_value(json!({"id": "1"})).unwrap(),
            rank: None,
        }])
        .await
        .unwrap();
    store.refresh_desired(None).await.unwrap();
    let row = store.outbox_rows(&ch("shop"), &[sku("TEE")]).await.unwrap()[0].clone();
    // Acknowledged: clean.
    store
        .outbox_record(vec![OutboxUpdate::Acked {
            channel: ch("shop"),
            sku: sku("TEE"),
            gen: row.desired_gen,
            state: row.desired.clone(),
            channel_quantity: Some(row.desired.quantity),
            at: Utc::now(),
            counted: true,
            recent_before: Vec::new(),
            channel_gen: row.channel_gen,
        }])
        .await
        .unwrap();
    let clean = store.outbox_rows(&ch("shop"), &[sku("TEE")]).await.unwrap()[0].clone();
    assert!(clean.dirty_since.is_none());
    let fix = |desired_gen: u64| Requeue {
        sku: sku("TEE"),
        observed_quantity: Some(7),
        forget_pushed: false,
        seen_desired_gen: desired_gen,
        seen_channel_gen: clean.channel_gen,
    };
    // Seen with another generation: a newer change wins, nothing queued.
    let none = store
        .recon_requeue(&ch("shop"), vec![fix(clean.desired_gen + 1)], Utc::now())
        .await
        .unwrap();
    assert!(none.is_empty());
    let queued = store
        .recon_requeue(&ch("shop"), vec![fix(clean.desired_gen)], Utc::now())
        .await
        .unwrap();
    assert_eq!(queued, vec![sku("TEE")]);
    let dirty = store.outbox_rows(&ch("shop"), &[sku("TEE")]).await.unwrap()[0].clone();
    assert!(dirty.dirty_since.is_some());
    assert_eq!(dirty.channel_quantity, Some(7));
    assert_eq!(dirty.channel_gen, clean.channel_gen + 1);
    assert_eq!(dirty.last_error.as_deref(), Some("reconciliation"));
    // Already lagging: not queued twice.
    let again = store
        .recon_requeue(
            &ch("shop"),
            vec![Requeue {
                seen_channel_gen: dirty.channel_gen,
                ..fix(dirty.desired_gen)
            }],
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(again.is_empty());
}

async fn sqlite_store() -> (Shared, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stockd.db").display());
    (stockd_store::open(&url).await.unwrap(), dir)
}

async fn postgres_store(name: &str) -> Option<Shared> {
    let url = stockd_store::test_support::fresh_postgres_url(name).await?;
    Some(stockd_store::open(&url).await.unwrap())
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(store) = super::postgres_store(concat!("recon_", stringify!($case))).await else { return };
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

conformance!(
    runs_commit_progress_page_by_page,
    requeue_applies_only_to_a_row_as_seen,
);
