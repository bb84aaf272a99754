//! One conformance suite, run against every store adapter: each case is an
//! async fn over `Arc<dyn Store>`, instantiated for SQLite (a fresh file) and
//! PostgreSQL (a fresh database; skipped loudly when unreachable unless
//! STOCKD_REQUIRE_SERVICES=1).

#[macro_use]
mod both_stores;

use serde_json::{json, Value};
use stockd_core::{
    Event, EventInput, EventStatus, Location, LocationId, RequestError, Sku, Variant,
};
use stockd_store::{submission, LedgerQuery, SubmitOutcome};

use both_stores::Shared;

fn event(value: Value) -> stockd_core::Submission {
    let input: EventInput = serde_json::from_value(value).expect("event input");
    submission(Event::validate(&input).expect("valid event"))
}

async fn submit(store: &Shared, events: Vec<Value>) -> SubmitOutcome {
    store
        .submit(events.into_iter().map(event).collect())
        .await
        .expect("store answers")
}

fn statuses(outcome: &SubmitOutcome) -> Vec<EventStatus> {
    outcome
        .as_ref()
        .expect("request applied")
        .iter()
        .map(|r| r.status)
        .collect()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

async fn location(store: &Shared, id: &str, sellable: bool, priority: i32) {
    store
        .upsert_location(Location {
            id: LocationId::parse(id).unwrap(),
            name: format!("{id} warehouse"),
            sellable,
            priority,
        })
        .await
        .unwrap();
}

async fn variants(store: &Shared, skus: &[&str]) {
    store
        .upsert_variants(
            skus.iter()
                .map(|s| Variant {
                    sku: sku(s),
                    title: Some(format!("{s} title")),
                    product_id: Some("P1".into()),
                    gtin: None,
                })
                .collect(),
        )
        .await
        .unwrap();
}

/// (on_hand, reserved, available, oversold) over sellable locations.
async fn totals(store: &Shared, s: &str) -> (i64, i64, i64, i64) {
    let view = store.stock(&sku(s)).await.unwrap().expect("known sku");
    (view.on_hand, view.reserved, view.available, view.oversold)
}

async fn setup(store: &Shared) {
    location(store, "AMS", true, 1).await;
    location(store, "RTM", true, 2).await;
    location(store, "QC", false, 0).await;
    variants(store, &["TEE-M", "TEE-L"]).await;
}

async fn applies_and_reads_back(store: Shared) {
    setup(&store).await;
    let out = submit(
        &store,
        vec![
            json!({"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 5}),
            json!({"key": "r2", "type": "receipt", "sku": "TEE-M", "location": "RTM", "qty": 3}),
            json!({"key": "r3", "type": "receipt", "sku": "TEE-M", "location": "QC", "qty": 9}),
        ],
    )
    .await;
    let results = out.unwrap();
    assert_eq!(
        results.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert_eq!(totals(&store, "TEE-M").await, (8, 0, 8, 0));
    let view = store.stock(&sku("TEE-M")).await.unwrap().unwrap();
    assert_eq!(view.locations.len(), 3);
    assert!(store.stock(&sku("NOPE")).await.unwrap().is_none());
    let variant = store.variant(&sku("TEE-M")).await.unwrap().unwrap();
    assert_eq!(variant.title.as_deref(), Some("TEE-M title"));
    assert_eq!(store.locations().await.unwrap()[0].id.as_str(), "QC");
}

async fn idempotent_per_key(store: Shared) {
    setup(&store).await;
    let receipt =
        json!({"key": "k1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 5});
    let first = submit(&store, vec![receipt.clone()]).await.unwrap();
    let again = submit(&store, vec![receipt]).await.unwrap();
    assert_eq!(again[0].status, EventStatus::Duplicate);
    assert_eq!(again[0].seq, first[0].seq);
    let changed =
        json!({"key": "k1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 6});
    let reused = submit(
        &store,
        vec![
            json!({"key": "k2", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1}),
            changed,
        ],
    )
    .await;
    assert!(matches!(
        reused,
        Err(RequestError::KeyReused { index: 1, .. })
    ));
    // Nothing of the refused request was applied, k2 included.
    assert_eq!(totals(&store, "TEE-M").await, (5, 0, 5, 0));
    let k2 = submit(
        &store,
        vec![json!({"key": "k2", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1})],
    )
    .await;
    assert_eq!(statuses(&k2), [EventStatus::Applied]);
}

async fn a_batch_is_atomic(store: Shared) {
    setup(&store).await;
    submit(
        &store,
        vec![json!({"key": "r", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 4})],
    )
    .await
    .unwrap();
    let refused = submit(
        &store,
        vec![
            json!({"key": "o1", "type": "order", "channel": "shop", "order_id": "1001",
                   "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}]}),
            json!({"key": "s1", "type": "ship", "channel": "shop", "order_id": "1001"}),
            json!({"key": "s2", "type": "ship", "channel": "shop", "order_id": "1001",
                   "lines": [{"line_id": "1", "qty": 1}]}),
        ],
    )
    .await;
    match refused {
        Err(RequestError::Rejected { index, error }) => {
            assert_eq!(index, 2);
            assert_eq!(error.code(), "reservation_exceeded");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(totals(&store, "TEE-M").await, (4, 0, 4, 0));
    let ledger = store
        .ledger(&LedgerQuery {
            sku: None,
            after_seq: 0,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    // The keys of the refused request are free.
    let retry = submit(
        &store,
        vec![
            json!({"key": "o1", "type": "order", "channel": "shop", "order_id": "1001",
                    "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}]}),
        ],
    )
    .await;
    assert_eq!(statuses(&retry), [EventStatus::Applied]);
    assert_eq!(totals(&store, "TEE-M").await, (4, 2, 2, 0));
}

async fn orders_reserve_ship_cancel_and_oversell(store: Shared) {
    setup(&store).await;
    submit(
        &store,
        vec![
            json!({"key": "a", "type": "receipt", "sku": "TEE-L", "location": "AMS", "qty": 2}),
            json!({"key": "b", "type": "receipt", "sku": "TEE-L", "location": "RTM", "qty": 2}),
            json!({"key": "o", "type": "order", "channel": "shop", "order_id": "7",
                   "lines": [{"line_id": "1", "sku": "TEE-L", "qty": 3},
                             {"line_id": "2", "sku": "TEE-L", "qty": 2}]}),
        ],
    )
    .await
    .unwrap();
    // 5 ordered, 4 on hand: one unit oversold.
    assert_eq!(totals(&store, "TEE-L").await, (4, 5, 0, 1));
    let view = store.stock(&sku("TEE-L")).await.unwrap().unwrap();
    let ams = view
        .locations
        .iter()
        .find(|l| l.location.as_str() == "AMS")
        .unwrap();
    assert_eq!((ams.on_hand, ams.reserved), (2, 3));
    let ledger = store
        .ledger(&LedgerQuery {
            sku: Some(sku("TEE-L")),
            after_seq: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 3);
    assert!(ledger[2].notes.iter().any(|n| matches!(
        n,
        stockd_core::Note::Oversell {
            shortfall_qty: 1,
            ..
        }
    )));

    submit(
        &store,
        vec![
            json!({"key": "c", "type": "cancel", "channel": "shop", "order_id": "7",
                   "lines": [{"line_id": "2", "qty": 1}]}),
            json!({"key": "s", "type": "ship", "channel": "shop", "order_id": "7",
                   "lines": [{"line_id": "1"}]}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(totals(&store, "TEE-L").await, (1, 1, 0, 0));
    let whole = submit(
        &store,
        vec![json!({"key": "c2", "type": "cancel", "channel": "shop", "order_id": "7"})],
    )
    .await;
    assert_eq!(statuses(&whole), [EventStatus::Applied]);
    assert_eq!(totals(&store, "TEE-L").await, (1, 0, 1, 0));
    let nothing = submit(
        &store,
        vec![json!({"key": "c3", "type": "cancel", "channel": "shop", "order_id": "7"})],
    )
    .await;
    assert!(matches!(nothing, Err(RequestError::Rejected { .. })));
}

async fn quarantine_and_replay(store: Shared) {
    location(&store, "AMS", true, 1).await;
    let out = submit(
        &store,
        vec![
            json!({"key": "q1", "type": "receipt", "sku": "NEW-1", "location": "AMS", "qty": 4}),
            json!({"key": "q2", "type": "receipt", "sku": "NEW-1", "location": "NEW-LOC", "qty": 1}),
            json!({"key": "q3", "type": "cancel", "channel": "shop", "order_id": "55"}),
        ],
    )
    .await;
    assert_eq!(statuses(&out), [EventStatus::Quarantined; 3]);
    let listed = store.quarantine(0, 100).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed[0].reason.contains("NEW-1"));
    // Resending a quarantined event is a duplicate, not a second copy.
    let again = submit(
        &store,
        vec![json!({"key": "q1", "type": "receipt", "sku": "NEW-1", "location": "AMS", "qty": 4})],
    )
    .await;
    assert_eq!(statuses(&again), [EventStatus::Duplicate]);

    let summary = store
        .upsert_variants(vec![Variant {
            sku: sku("NEW-1"),
            title: None,
            product_id: None,
            gtin: None,
        }])
        .await
        .unwrap();
    assert_eq!(summary.replayed, 1);
    assert_eq!(totals(&store, "NEW-1").await, (4, 0, 4, 0));
    let listed = store.quarantine(0, 100).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed[0].reason.contains("NEW-LOC"),
        "now waits for the location: {listed:?}"
    );
    location(&store, "NEW-LOC", true, 5).await;
    assert_eq!(totals(&store, "NEW-1").await, (5, 0, 5, 0));
    // Applied after replay: a resend reports the seq it got.
    let again = submit(
        &store,
        vec![json!({"key": "q1", "type": "receipt", "sku": "NEW-1", "location": "AMS", "qty": 4})],
    )
    .await
    .unwrap();
    assert_eq!(again[0].status, EventStatus::Duplicate);
    assert!(again[0].seq.is_some());

    // The cancel waits for its order, and is replayed when the order arrives.
    submit(
        &store,
        vec![
            json!({"key": "o55", "type": "order", "channel": "shop", "order_id": "55",
                    "lines": [{"line_id": "1", "sku": "NEW-1", "qty": 2}]}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(totals(&store, "NEW-1").await, (5, 0, 5, 0));
    assert!(store.quarantine(0, 100).await.unwrap().is_empty());
}

async fn discarding_frees_the_key(store: Shared) {
    location(&store, "AMS", true, 1).await;
    submit(
        &store,
        vec![json!({"key": "x", "type": "receipt", "sku": "GHOST", "location": "AMS", "qty": 1})],
    )
    .await
    .unwrap();
    let id = store.quarantine(0, 10).await.unwrap()[0].id;
    assert!(store.discard_quarantined(id).await.unwrap());
    assert!(!store.discard_quarantined(id).await.unwrap());
    variants(&store, &["GHOST"]).await;
    assert_eq!(totals(&store, "GHOST").await, (0, 0, 0, 0));
    let resent = submit(
        &store,
        vec![json!({"key": "x", "type": "receipt", "sku": "GHOST", "location": "AMS", "qty": 2})],
    )
    .await;
    assert_eq!(statuses(&resent), [EventStatus::Applied]);
}

async fn concurrent_duplicates_apply_once(store: Shared) {
    setup(&store).await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            submit(
                &store,
                vec![json!({"key": "same", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1})],
            )
            .await
        }));
    }
    let mut applied = 0;
    for task in tasks {
        if statuses(&task.await.unwrap()) == [EventStatus::Applied] {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(totals(&store, "TEE-M").await, (1, 0, 1, 0));
}

async fn concurrent_requests_group_commit(store: Shared) {
    setup(&store).await;
    let mut tasks = Vec::new();
    for t in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let out = submit(
                    &store,
                    vec![
                        json!({"key": format!("r-{t}-{i}"), "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 2}),
                        json!({"key": format!("o-{t}-{i}"), "type": "order", "order_id": format!("{t}-{i}"),
                               "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 1}]}),
                    ],
                )
                .await
                .unwrap();
                seqs.extend(out.iter().filter_map(|r| r.seq));
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=640).collect::<Vec<u64>>(),
        "one gap-free sequence"
    );
    assert_eq!(totals(&store, "TEE-M").await, (640, 320, 320, 0));
}

async fn inbound_and_returns(store: Shared) {
    setup(&store).await;
    submit(
        &store,
        vec![
            json!({"key": "po", "type": "inbound", "po_id": "PO-9", "sku": "TEE-M", "location": "AMS",
                   "qty": 10, "eta": "2026-12-03", "confirmed": true}),
            json!({"key": "rr", "type": "return_received", "rma_id": "R1", "sku": "TEE-M", "location": "AMS", "qty": 3}),
        ],
    )
    .await
    .unwrap();
    let view = store.stock(&sku("TEE-M")).await.unwrap().unwrap();
    assert_eq!(view.pending_return, 3);
    assert_eq!(view.inbound.len(), 1);
    assert_eq!(view.inbound[0].eta.unwrap().to_string(), "2026-12-03");
    assert!(view.inbound[0].confirmed);
    assert_eq!(view.on_hand, 0);
    submit(
        &store,
        vec![
            json!({"key": "ir", "type": "inbound_received", "po_id": "PO-9", "sku": "TEE-M", "location": "AMS", "qty": 4}),
            json!({"key": "rv", "type": "return_verified", "rma_id": "R1", "sku": "TEE-M", "location": "AMS",
                   "sellable_qty": 2, "unsellable_qty": 1}),
            json!({"key": "cnt", "type": "count", "sku": "TEE-M", "location": "AMS", "on_hand": 5}),
            json!({"key": "adj", "type": "adjust", "sku": "TEE-M", "location": "AMS", "delta": -1, "reason": "damaged"}),
        ],
    )
    .await
    .unwrap();
    let view = store.stock(&sku("TEE-M")).await.unwrap().unwrap();
    assert_eq!((view.on_hand, view.pending_return), (4, 0));
    assert_eq!(view.inbound[0].qty, 6);
}

/// Returns are tracked per RMA: received in parts and lines, verified by id
/// alone, waiting when verified before receipt, refused beyond what is pending.
async fn returns_per_rma(store: Shared) {
    use stockd_core::returns::ReturnStatus;
    setup(&store).await;
    let rma = |id: &str| stockd_core::RmaId::parse(id).unwrap();
    let outcome = submit(
        &store,
        vec![
            json!({"key": "a1", "type": "return_received", "rma_id": "R1", "sku": "TEE-M", "location": "AMS", "qty": 1}),
            json!({"key": "a2", "type": "return_received", "rma_id": "R1", "sku": "TEE-M", "location": "AMS", "qty": 2}),
            json!({"key": "a3", "type": "return_received", "rma_id": "R1", "sku": "TEE-L", "location": "RTM", "qty": 1}),
            json!({"key": "b1", "type": "return_verified", "rma_id": "R2", "sellable_qty": 1}),
        ],
    )
    .await;
    assert_eq!(
        statuses(&outcome),
        [
            EventStatus::Applied,
            EventStatus::Applied,
            EventStatus::Applied,
            EventStatus::Quarantined
        ]
    );
    let r1 = store.return_record(&rma("R1")).await.unwrap().unwrap();
    assert_eq!(r1.status, ReturnStatus::Open);
    assert_eq!((r1.received_qty, r1.pending_qty, r1.lines.len()), (4, 4, 2));
    assert_eq!(r1.lines[0].received_qty, 3);
    assert!(store.return_record(&rma("R2")).await.unwrap().is_none());
    // More than R1 has pending: refused whole, nothing changes.
    let refused = submit(
        &store,
        vec![json!({"key": "v0", "type": "return_verified", "rma_id": "R1", "sellable_qty": 4, "unsellable_qty": 1})],
    )
    .await;
    match refused {
        Err(RequestError::Rejected { error, .. }) => assert_eq!(error.code(), "return_exceeded"),
        other => panic!("expected return_exceeded, got {other:?}"),
    }
    submit(
        &store,
        vec![json!({"key": "v1", "type": "return_verified", "rma_id": "R1", "sellable_qty": 3, "unsellable_qty": 1})],
    )
    .await
    .unwrap();
    let r1 = store.return_record(&rma("R1")).await.unwrap().unwrap();
    assert_eq!(r1.status, ReturnStatus::Closed);
    assert_eq!(
        (r1.sellable_qty, r1.unsellable_qty, r1.pending_qty),
        (3, 1, 0)
    );
    assert_eq!(totals(&store, "TEE-M").await.0, 3);
    assert_eq!(
        store
            .stock(&sku("TEE-L"))
            .await
            .unwrap()
            .unwrap()
            .pending_return,
        0
    );
    // R2 arrives: the verification that waited for it is replayed.
    submit(
        &store,
        vec![json!({"key": "c1", "type": "return_received", "rma_id": "R2", "sku": "TEE-L", "location": "AMS", "qty": 2})],
    )
    .await
    .unwrap();
    let r2 = store.return_record(&rma("R2")).await.unwrap().unwrap();
    assert_eq!(
        (r2.status, r2.sellable_qty, r2.pending_qty),
        (ReturnStatus::Open, 1, 1)
    );
    let open = store
        .returns(Some(ReturnStatus::Open), None, 10)
        .await
        .unwrap();
    assert_eq!(
        open.iter().map(|r| r.rma_id.as_str()).collect::<Vec<_>>(),
        ["R2"]
    );
    let closed = store
        .returns(Some(ReturnStatus::Closed), None, 10)
        .await
        .unwrap();
    assert_eq!(
        closed.iter().map(|r| r.rma_id.as_str()).collect::<Vec<_>>(),
        ["R1"]
    );
    let all = store.returns(None, Some(&rma("R1")), 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.rma_id.as_str()).collect::<Vec<_>>(),
        ["R2"]
    );
}

async fn pages_through_stock_and_ledger(store: Shared) {
    location(&store, "AMS", true, 1).await;
    let skus: Vec<String> = (0..25).map(|i| format!("SKU-{i:03}")).collect();
    variants(&store, &skus.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let events = skus
        .iter()
        .map(|s| json!({"key": format!("r-{s}"), "type": "receipt", "sku": s, "location": "AMS", "qty": 1}))
        .collect();
    submit(&store, events).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<Sku> = None;
    loop {
        let page = store.stock_page(after.as_ref(), 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().sku.clone());
        seen.extend(
            page.into_iter()
                .map(|v| (v.sku.as_str().to_string(), v.on_hand)),
        );
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[24], ("SKU-024".to_string(), 1));
    let page = store
        .ledger(&LedgerQuery {
            sku: None,
            after_seq: 20,
            limit: 3,
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [21, 22, 23]);
    assert_eq!(page[0].kind, "receipt");
    assert_eq!(page[0].changes[0].on_hand, 1);
}

async fn channels_listings_kits_and_rules(store: Shared) {
    use stockd_core::availability::{Bundle, BundleComponent};
    use stockd_store::{ChannelKind, ChannelRecord, ListingRecord};
    setup(&store).await;
    let shop = stockd_core::ChannelId::parse("shop").unwrap();
    store
        .upsert_channel(ChannelRecord {
            id: shop.clone(),
            kind: ChannelKind::Shopify,
            locations: Some(vec![LocationId::parse("AMS").unwrap()]),
            enabled: true,
        })
        .await
        .unwrap();
    store
        .upsert_channel(ChannelRecord {
            id: stockd_core::ChannelId::parse("bol").unwrap(),
            kind: ChannelKind::Bol,
            locations: None,
            enabled: false,
        })
        .await
        .unwrap();
    let channels = store.channels().await.unwrap();
    assert_eq!(
        channels.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["bol", "shop"]
    );
    assert_eq!(
        store
            .channel(&shop)
            .await
            .unwrap()
            .unwrap()
            .locations
            .unwrap()
            .len(),
        1
    );

    let listing = |s: &str, rank: Option<i32>| ListingRecord {
        channel: shop.clone(),
        sku: sku(s),
        external: serde_json::from_value(json!({"inventory_item_id": format!("gid://{s}")}))
            .unwrap(),
        rank,
    };
    assert_eq!(
        store
            .upsert_listings(vec![
                listing("TEE-M", None),
                listing("TEE-L", Some(2)),
                listing("TEE-M", Some(1))
            ])
            .await
            .unwrap(),
        3
    );
    let page = store.listings(&shop, None, 10).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!((page[0].sku.as_str(), page[0].rank), ("TEE-L", Some(2)));
    assert_eq!((page[1].sku.as_str(), page[1].rank), ("TEE-M", Some(1)));
    assert_eq!(
        store
            .listings(&shop, Some(&sku("TEE-L")), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.listings_of(&[sku("TEE-M")]).await.unwrap()[0].external["inventory_item_id"],
        "gid://TEE-M"
    );
    assert_eq!(
        store.listed_skus(None, 10).await.unwrap(),
        [sku("TEE-L"), sku("TEE-M")]
    );

    let kit = Bundle {
        kit: sku("TEE-M"),
        components: vec![BundleComponent {
            sku: sku("TEE-L"),
            qty: 2,
        }],
    };
    store.put_bundle(kit.clone(), "ops").await.unwrap();
    assert_eq!(store.bundles().await.unwrap(), [kit]);
    assert!(store.delete_bundle(&sku("TEE-M"), "ops").await.unwrap());
    assert!(store.bundles().await.unwrap().is_empty());

    assert!(store.active_rules().await.unwrap().is_none());
    let mut doc = stockd_core::rules::RulesDocument::default();
    doc.defaults.safety_stock = Some(2);
    let v1 = store
        .add_rules_version(doc.clone(), "first".into(), "ops".into())
        .await
        .unwrap();
    doc.defaults.safety_stock = Some(3);
    let v2 = store
        .add_rules_version(doc.clone(), "second".into(), "ops".into())
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(store.active_rules().await.unwrap().unwrap().document, doc);
    assert_eq!(
        store.rules_version(1).await.unwrap().unwrap().message,
        "first"
    );
    assert_eq!(store.rules_versions().await.unwrap().len(), 2);
    assert!(store.rules_version(9).await.unwrap().is_none());

    submit(
        &store,
        vec![
            json!({"key": "r", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 4}),
            json!({"key": "po", "type": "inbound", "po_id": "P", "sku": "TEE-M", "location": "RTM", "qty": 3, "eta": "2026-12-01", "confirmed": true}),
            json!({"key": "o1", "type": "order", "channel": "shop", "order_id": "1",
                   "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}, {"line_id": "2", "sku": "TEE-L", "qty": 1}]}),
            json!({"key": "o2", "type": "order", "order_id": "2", "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 1}]}),
        ],
    )
    .await
    .unwrap();
    let stock = store
        .variant_stock(&[sku("TEE-M"), sku("NOPE")])
        .await
        .unwrap();
    assert_eq!(stock.len(), 1);
    assert_eq!(stock[0].inbound.len(), 1);
    let ams = stock[0]
        .stock
        .iter()
        .find(|(l, _)| l.as_str() == "AMS")
        .unwrap();
    assert_eq!((ams.1.on_hand, ams.1.reserved), (4, 3));
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    let sales = store.sales_since(&[sku("TEE-M")], since).await.unwrap();
    // Only orders from a channel count as that channel's sales.
    assert_eq!(sales.len(), 1);
    assert_eq!((sales[0].channel.as_str(), sales[0].qty), ("shop", 2));
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(store
        .sales_since(&[sku("TEE-M")], later)
        .await
        .unwrap()
        .is_empty());
}

async fn kit_orders_reserve_components(store: Shared) {
    use stockd_core::availability::{Bundle, BundleComponent};
    setup(&store).await;
    variants(&store, &["GIFT-BOX"]).await;
    store
        .put_bundle(
            Bundle {
                kit: sku("GIFT-BOX"),
                components: vec![
                    BundleComponent {
                        sku: sku("TEE-M"),
                        qty: 2,
                    },
                    BundleComponent {
                        sku: sku("TEE-L"),
                        qty: 1,
                    },
                ],
            },
            "ops",
        )
        .await
        .unwrap();
    submit(
        &store,
        vec![
            json!({"key": "a", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 10}),
            json!({"key": "b", "type": "receipt", "sku": "TEE-L", "location": "AMS", "qty": 10}),
            json!({"key": "c", "type": "receipt", "sku": "GIFT-BOX", "location": "AMS", "qty": 1}),
            json!({"key": "o", "type": "order", "channel": "shop", "order_id": "9",
                   "lines": [{"line_id": "1", "sku": "GIFT-BOX", "qty": 3}]}),
        ],
    )
    .await
    .unwrap();
    // One pre-built box, two assembled: 4 TEE-M and 2 TEE-L reserved.
    assert_eq!(totals(&store, "GIFT-BOX").await, (1, 1, 0, 0));
    assert_eq!(totals(&store, "TEE-M").await, (10, 4, 6, 0));
    assert_eq!(totals(&store, "TEE-L").await, (10, 2, 8, 0));
    // A later request reads the kit rows back: ship two boxes, cancel the last.
    submit(
        &store,
        vec![
            json!({"key": "s", "type": "ship", "channel": "shop", "order_id": "9",
                    "lines": [{"line_id": "1", "sku": "GIFT-BOX", "qty": 2}]}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(totals(&store, "GIFT-BOX").await, (0, 0, 0, 0));
    assert_eq!(totals(&store, "TEE-M").await, (8, 2, 6, 0));
    submit(
        &store,
        vec![json!({"key": "x", "type": "cancel", "channel": "shop", "order_id": "9"})],
    )
    .await
    .unwrap();
    assert_eq!(totals(&store, "TEE-M").await, (8, 0, 8, 0));
    assert_eq!(totals(&store, "TEE-L").await, (9, 0, 9, 0));
}

/// Runs `case` on a store, closes it, reopens the same database and runs `then`.
async fn survives_reopen(
    open: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Shared>>>,
) {
    let store = open().await;
    setup(&store).await;
    submit(
        &store,
        vec![
            json!({"key": "r", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 3}),
            json!({"key": "o", "type": "order", "order_id": "9", "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}]}),
        ],
    )
    .await
    .unwrap();
    store.close().await;
    let store = open().await;
    let again = submit(
        &store,
        vec![json!({"key": "r", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 3})],
    )
    .await;
    assert_eq!(statuses(&again), [EventStatus::Duplicate]);
    submit(
        &store,
        vec![json!({"key": "s", "type": "ship", "order_id": "9", "lines": [{"line_id": "1", "qty": 1}]})],
    )
    .await
    .unwrap();
    assert_eq!(totals(&store, "TEE-M").await, (2, 1, 1, 0));
    store.close().await;
}

/// Titles written by bulk upserts are found by the console search: new
/// rows, renamed rows (by their new title only), unchanged rows written
/// again, and a SKU named twice in one upsert (its last title counts).
async fn bulk_upserted_titles_are_searchable(store: Shared) {
    let variant = |i: usize, title: &str| Variant {
        sku: sku(&format!("BULK-{i:05}")),
        title: Some(title.to_string()),
        product_id: None,
        gtin: None,
    };
    let first: Vec<Variant> = (0..3_000)
        .map(|i| variant(i, &format!("Oak shelf model {i:05}")))
        .collect();
    store.upsert_variants(first.clone()).await.unwrap();
    let found = |text: &'static str| {
        let store = store.clone();
        async move {
            let mut skus: Vec<String> = store
                .search_variants(text, 50)
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.sku.as_str().to_string())
                .collect();
            skus.sort();
            skus
        }
    };
    assert_eq!(found("model 02999").await, ["BULK-02999"]);
    assert_eq!(found("shelf model 0000").await.len(), 10);
    // Again: the rest unchanged, two renamed, one named twice.
    let mut second = first;
    second[7] = variant(7, "Walnut desk");
    second[2_500] = variant(2_500, "Pine stool");
    second.push(variant(3_000, "Cherry bench"));
    second.push(variant(3_000, "Birch bench"));
    store.upsert_variants(second).await.unwrap();
    assert_eq!(found("walnut").await, ["BULK-00007"]);
    assert_eq!(found("pine stool").await, ["BULK-02500"]);
    assert_eq!(found("birch").await, ["BULK-03000"]);
    assert!(found("cherry").await.is_empty());
    assert!(found("model 00007").await.is_empty());
    assert_eq!(found("model 00008").await, ["BULK-00008"]);
    assert_eq!(found("shelf model 0000").await.len(), 9);
}

on_both_stores!(
    applies_and_reads_back,
    idempotent_per_key,
    a_batch_is_atomic,
    orders_reserve_ship_cancel_and_oversell,
    quarantine_and_replay,
    discarding_frees_the_key,
    concurrent_duplicates_apply_once,
    concurrent_requests_group_commit,
    inbound_and_returns,
    returns_per_rma,
    pages_through_stock_and_ledger,
    channels_listings_kits_and_rules,
    kit_orders_reserve_components,
    bulk_upserted_titles_are_searchable,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stockd.db").display());
    survives_reopen(move || {
        let url = url.clone();
        Box::pin(async move { stockd_store::open(&url).await.unwrap() })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_reopen() {
    let Some(url) = stockd_store::test_support::fresh_postgres_url("reopen").await else {
        return;
    };
    survives_reopen(move || {
        let url = url.clone();
        Box::pin(async move { stockd_store::open(&url).await.unwrap() })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_instances_share_one_database() {
    let Some(url) = stockd_store::test_support::fresh_postgres_url("two_instances").await else {
        return;
    };
    let a = stockd_store::open(&url).await.unwrap();
    let b = stockd_store::open(&url).await.unwrap();
    setup(&a).await;
    let mut tasks = Vec::new();
    for (n, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                // Both instances send the same keys: each applies once in total.
                submit(
                    &store,
                    vec![json!({"key": format!("r-{i}"), "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1}),
                         json!({"key": format!("own-{n}-{i}"), "type": "receipt", "sku": "TEE-L", "location": "AMS", "qty": 1})],
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(totals(&a, "TEE-M").await, (20, 0, 20, 0));
    assert_eq!(totals(&b, "TEE-L").await, (40, 0, 40, 0));
    let ledger = a
        .ledger(&LedgerQuery {
            sku: None,
            after_seq: 0,
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!(
        ledger.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<u64>>()
    );
    a.close().await;
    b.close().await;
}
