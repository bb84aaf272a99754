//! Reconciliation runs in the store, on every adapter: a run's progress
//! commits page by page and reads back the same; queueing a drifting listing
//! again applies only to a row still as the run saw it.

#[macro_use]
mod both_stores;

use chrono::{Duration, Utc};
use serde_json::json;
use stockd_core::{ChannelId, Location, LocationId, Sku, Variant};
use stockd_store::kpis::{
    histogram_percentile, latency_bucket, DayCounts, PushAttempt, LATENCY_BUCKETS_MS,
};
use stockd_store::outbox::OutboxUpdate;
use stockd_store::reconcile::{ClassCounts, DriftClass, PageProgress, Requeue, RunItem, RunStatus};
use stockd_store::{ChannelKind, ChannelRecord, ListingRecord};

use both_stores::Shared;

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
    // Found a minute after the SKU's last cause: the fix's latency runs
    // from the finding, not from that cause.
    let found = clean.caused_at + chrono::Duration::seconds(60);
    let queued = store
        .recon_requeue(&ch("shop"), vec![fix(clean.desired_gen)], found)
        .await
        .unwrap();
    assert_eq!(queued, vec![sku("TEE")]);
    let dirty = store.outbox_rows(&ch("shop"), &[sku("TEE")]).await.unwrap()[0].clone();
    assert!(dirty.dirty_since.is_some());
    assert_eq!(
        dirty.latency_start().timestamp_millis(),
        found.timestamp_millis()
    );
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

fn attempt(channel: &str, s: &str, at: chrono::DateTime<Utc>, latency: Option<f64>) -> PushAttempt {
    PushAttempt {
        id: 0,
        at,
        channel: ch(channel),
        sku: sku(s),
        desired_gen: 3,
        rules_version: Some(2),
        caused_seq: Some(41),
        sent: json!({"quantity": 4}),
        outcome: if latency.is_some() {
            "applied"
        } else {
            "retryable"
        }
        .into(),
        channel_quantity: Some(4),
        code: None,
        message: None,
        latency_ms: latency,
        dead_lettered: false,
    }
}

async fn audit_trail_and_daily_figures(store: Shared) {
    let now = Utc::now();
    let old = now - Duration::days(40);
    store
        .kpi_record(
            vec![
                attempt("shop", "A", old, Some(20.0)),
                attempt("shop", "A", now, Some(4_000.0)),
                attempt("bol", "A", now, None),
                attempt("shop", "B", now, Some(20.0)),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    let of_a = store
        .push_attempts(Some(&sku("A")), None, 0, 10)
        .await
        .unwrap();
    assert_eq!(of_a.len(), 3);
    assert_eq!(of_a[0].caused_seq, Some(41));
    assert_eq!(of_a[0].sent, json!({"quantity": 4}));
    let shop_a = store
        .push_attempts(Some(&sku("A")), Some(&ch("shop")), 0, 10)
        .await
        .unwrap();
    assert_eq!(shop_a.len(), 2);
    let bol = store
        .push_attempts(None, Some(&ch("bol")), 0, 10)
        .await
        .unwrap();
    assert_eq!(bol.len(), 1);
    let after = store
        .push_attempts(None, None, of_a[0].id, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 3);
    // Retention: the 40-day-old attempt goes.
    let pruned = store
        .push_attempts_prune(now - Duration::days(30), 100)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(
        store.push_attempts(None, None, 0, 10).await.unwrap().len(),
        3
    );

    let today = now.date_naive();
    let mut latency = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    latency[latency_bucket(20.0)] = 3;
    latency[latency_bucket(4_000.0)] = 1;
    let counts = DayCounts {
        order_lines: 0,
        stock_cancels: 0,
        pushes: 4,
        failures: 1,
        dead_letters: 1,
        latency,
    };
    store
        .kpi_record(Vec::new(), vec![(ch("shop"), today, counts.clone())])
        .await
        .unwrap();
    store
        .kpi_record(Vec::new(), vec![(ch("shop"), today, counts)])
        .await
        .unwrap();
    // Order lines follow the ledger once: a second writer at the same
    // cursor is refused.
    let from = store.kpi_ledger_cursor().await.unwrap();
    let orders = DayCounts {
        order_lines: 200,
        stock_cancels: 2,
        ..DayCounts::default()
    };
    assert!(store
        .kpi_follow_ledger(from, from + 5, vec![(ch("shop"), today, orders.clone())])
        .await
        .unwrap());
    assert!(!store
        .kpi_follow_ledger(from, from + 5, vec![(ch("shop"), today, orders)])
        .await
        .unwrap());
    assert_eq!(store.kpi_ledger_cursor().await.unwrap(), from + 5);
    let days = store
        .kpi_days(today - Duration::days(89), today, Some(&ch("shop")))
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    let d = &days[0].counts;
    assert_eq!((d.pushes, d.failures, d.dead_letters), (8, 2, 2));
    assert_eq!((d.order_lines, d.stock_cancels), (200, 2));
    assert_eq!(histogram_percentile(&d.latency, 50.0), Some(25.0));
    assert_eq!(histogram_percentile(&d.latency, 95.0), Some(5_000.0));
    assert!(store
        .kpi_days(today - Duration::days(89), today, Some(&ch("bol")))
        .await
        .unwrap()
        .is_empty());
}

on_both_stores!(
    runs_commit_progress_page_by_page,
    requeue_applies_only_to_a_row_as_seen,
    audit_trail_and_daily_figures,
);
