//! Conformance of the transactional outbox, run against every store adapter:
//! each case is an async fn over `Arc<dyn Store>`, instantiated for SQLite (a
//! fresh file) and PostgreSQL (a fresh database; skipped loudly when
//! unreachable unless STOCKD_REQUIRE_SERVICES=1).
//!
//! The writer stamps event groups with its own clock, so checks on the times
//! it writes bracket the call; times the dispatcher passes in (`at`,
//! `next_attempt_at`, `now` of `outbox_due`) are chosen by the test.

#[macro_use]
mod both_stores;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use stockd_core::availability::{Availability, Bundle, BundleComponent, ListingState};
use stockd_core::{
    ChannelId, Event, EventInput, EventStatus, Location, LocationId, RequestError, Sku, Variant,
};
use stockd_store::outbox::{DeadLetter, OutboxRow, OutboxUpdate};
use stockd_store::{submission, ChannelKind, ChannelRecord, ListingRecord};

use both_stores::Shared;

// ----- helpers ---------------------------------------------------------------

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn ch(s: &str) -> ChannelId {
    ChannelId::parse(s).unwrap()
}

/// `at` truncated to the millisecond, as the store keeps times.
fn ms(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(at.timestamp_millis()).unwrap()
}

fn event(value: Value) -> stockd_core::Submission {
    let input: EventInput = serde_json::from_value(value).expect("event input");
    submission(Event::validate(&input).expect("valid event"))
}

/// Submits one request and returns the ledger seq of each event, with the
/// writer's clock bracketed by `(before, after)` (millisecond precision).
async fn submit_timed(
    store: &Shared,
    events: Vec<Value>,
) -> (Vec<Option<u64>>, DateTime<Utc>, DateTime<Utc>) {
    let before = ms(Utc::now());
    let results = store
        .submit(events.into_iter().map(event).collect())
        .await
        .expect("store answers")
        .expect("request applied");
    let after = Utc::now();
    for r in &results {
        assert_eq!(r.status, EventStatus::Applied, "{r:?}");
    }
    (results.iter().map(|r| r.seq).collect(), before, after)
}

/// Submits one event; returns its ledger seq.
async fn submit_one(store: &Shared, value: Value) -> u64 {
    submit_timed(store, vec![value]).await.0[0].expect("applied event has a seq")
}

async fn receipt(store: &Shared, key: &str, s: &str, location: &str, qty: i64) -> u64 {
    submit_one(
        store,
        json!({"key": key, "type": "receipt", "sku": s, "location": location, "qty": qty}),
    )
    .await
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

/// A channel, then a whole-catalog refresh (what the API does).
async fn channel(store: &Shared, id: &str, kind: ChannelKind, locations: Option<&[&str]>) {
    store
        .upsert_channel(ChannelRecord {
            id: ch(id),
            kind,
            locations: locations
                .map(|l| l.iter().map(|l| LocationId::parse(*l).unwrap()).collect()),
            enabled: true,
        })
        .await
        .unwrap();
    store.refresh_desired(None).await.unwrap();
}

/// Listings of `skus` on `channel`, then a refresh of those SKUs (what the API does).
async fn list(store: &Shared, channel: &str, skus: &[&str]) {
    let records = skus
        .iter()
        .map(|s| ListingRecord {
            channel: ch(channel),
            sku: sku(s),
            external: serde_json::from_value(json!({"id": format!("{channel}-{s}")})).unwrap(),
            rank: None,
        })
        .collect();
    store.upsert_listings(records).await.unwrap();
    store
        .refresh_desired(Some(skus.iter().map(|s| sku(s)).collect()))
        .await
        .unwrap();
}

/// AMS and RTM sellable, QC not; TEE-M, TEE-L and TEE-S known; channel `shop`
/// sells AMS only, channel `bol` every sellable location.
async fn setup(store: &Shared) {
    location(store, "AMS", true, 1).await;
    location(store, "RTM", true, 2).await;
    location(store, "QC", false, 0).await;
    variants(store, &["TEE-M", "TEE-L", "TEE-S"]).await;
    channel(store, "shop", ChannelKind::Shopify, Some(&["AMS"])).await;
    channel(store, "bol", ChannelKind::Bol, None).await;
}

async fn row(store: &Shared, channel: &str, s: &str) -> Option<OutboxRow> {
    let mut rows = store.outbox_rows(&ch(channel), &[sku(s)]).await.unwrap();
    assert!(rows.len() <= 1, "one row per listing: {rows:?}");
    rows.pop()
}

async fn must_row(store: &Shared, channel: &str, s: &str) -> OutboxRow {
    row(store, channel, s)
        .await
        .unwrap_or_else(|| panic!("no outbox row for {channel}/{s}"))
}

/// Every row, in (channel, sku) order.
async fn all_rows(store: &Shared) -> Vec<OutboxRow> {
    store.outbox(None, None, false, 1000).await.unwrap()
}

fn keys(rows: &[OutboxRow]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r.channel.as_str().to_string(), r.sku.as_str().to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect()
}

async fn due(store: &Shared, channel: &str, now: DateTime<Utc>) -> Vec<OutboxRow> {
    store.outbox_due(&ch(channel), now, 100).await.unwrap()
}

async fn due_skus(store: &Shared, channel: &str, now: DateTime<Utc>) -> Vec<String> {
    due(store, channel, now)
        .await
        .into_iter()
        .map(|r| r.sku.as_str().to_string())
        .collect()
}

fn in_stock(quantity: i64) -> ListingState {
    ListingState {
        quantity,
        availability: if quantity > 0 {
            Availability::InStock
        } else {
            Availability::OutOfStock
        },
        eta: None,
        ship_window_days: None,
    }
}

/// The acknowledgement of exactly what `row` asks for.
fn ack(row: &OutboxRow, at: DateTime<Utc>) -> OutboxUpdate {
    OutboxUpdate::Acked {
        channel: row.channel.clone(),
        sku: row.sku.clone(),
        gen: row.desired_gen,
        state: row.desired.clone(),
        channel_quantity: Some(row.desired.quantity),
        at,
        counted: true,
        recent_before: vec![],
        channel_gen: row.channel_gen,
    }
}

fn letter(row: &OutboxRow, code: &str, at: DateTime<Utc>) -> DeadLetter {
    DeadLetter {
        id: 0,
        channel: row.channel.clone(),
        sku: row.sku.clone(),
        desired_gen: row.desired_gen,
        desired: row.desired.clone(),
        code: code.to_string(),
        message: format!("{code} from the channel"),
        status: Some(422),
        body: Some(json!({"errors": [code]}).to_string()),
        attempts: 7,
        created_at: ms(at),
        superseded: false,
        transient: false,
    }
}

fn assert_between(at: DateTime<Utc>, before: DateTime<Utc>, after: DateTime<Utc>, what: &str) {
    assert!(
        before <= at && at <= after,
        "{what}: {at} not within [{before}, {after}]"
    );
}

// ----- cases -----------------------------------------------------------------

/// Case 1: An event writes the desired state of each listing of its SKU in the
/// same commit as the event itself.
async fn receipt_writes_listing_state_in_the_same_commit(store: Shared) {
    setup(&store).await;
    assert!(all_rows(&store).await.is_empty(), "nothing listed yet");
    let before = ms(Utc::now());
    list(&store, "shop", &["TEE-M"]).await;
    list(&store, "bol", &["TEE-M"]).await;
    let listed_by = Utc::now();
    // Listing a SKU writes its first desired state (nothing in stock), caused by no event.
    let rows = all_rows(&store).await;
    assert_eq!(keys(&rows), pairs(&[("bol", "TEE-M"), ("shop", "TEE-M")]));
    for r in &rows {
        assert_eq!(r.desired, in_stock(0));
        assert_eq!(r.desired_gen, 1);
        assert_eq!(r.sent_gen, 0);
        assert_eq!(r.caused_seq, None);
        assert_eq!(r.rules_version, None);
        assert!(r.pushed.is_none() && r.pushed_at.is_none());
        assert_eq!(r.channel_quantity, None);
        assert!(r.recent_pushes.is_empty());
        assert_eq!((r.attempts, r.next_attempt_at, r.parked), (0, None, false));
        assert_between(
            r.dirty_since.expect("dirty"),
            before,
            listed_by,
            "dirty_since",
        );
        assert_between(r.caused_at, before, listed_by, "caused_at");
    }

    let (seqs, before, after) = submit_timed(
        &store,
        vec![json!({"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 5})],
    )
    .await;
    let seq = seqs[0].unwrap();
    // Read straight after `submit` returned: written in the event's commit.
    let rows = store.outbox(None, None, true, 100).await.unwrap();
    assert_eq!(keys(&rows), pairs(&[("bol", "TEE-M"), ("shop", "TEE-M")]));
    for r in &rows {
        assert_eq!(r.desired, in_stock(5), "{r:?}");
        assert_eq!(r.desired_gen, 2);
        assert_eq!(r.caused_seq, Some(seq));
        assert_between(r.caused_at, before, after, "caused_at");
        // Dirty since the listing was created: never sent yet.
        assert!(r.dirty_since.unwrap() <= r.caused_at);
    }

    // RTM counts for bol only: shop's row does not move.
    let (seqs, before, after) = submit_timed(
        &store,
        vec![json!({"key": "r2", "type": "receipt", "sku": "TEE-M", "location": "RTM", "qty": 2})],
    )
    .await;
    let bol = must_row(&store, "bol", "TEE-M").await;
    assert_eq!((bol.desired.quantity, bol.desired_gen), (7, 3));
    assert_eq!(bol.caused_seq, seqs[0]);
    assert_between(bol.caused_at, before, after, "caused_at");
    let shop = must_row(&store, "shop", "TEE-M").await;
    assert_eq!((shop.desired.quantity, shop.desired_gen), (5, 2));
    assert_eq!(shop.caused_seq, Some(seq));

    // Stock at a location no channel sells changes no listing.
    receipt(&store, "r3", "TEE-M", "QC", 9).await;
    assert_eq!(must_row(&store, "bol", "TEE-M").await.desired_gen, 3);
    assert_eq!(must_row(&store, "shop", "TEE-M").await.desired_gen, 2);

    // A SKU without listings gets no row.
    receipt(&store, "r4", "TEE-L", "AMS", 4).await;
    assert!(row(&store, "shop", "TEE-L").await.is_none());
    assert!(row(&store, "bol", "TEE-L").await.is_none());
    assert_eq!(all_rows(&store).await.len(), 2);

    // A duplicate and a refused request change nothing.
    let dup = store
        .submit(vec![event(
            json!({"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 5}),
        )])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dup[0].status, EventStatus::Duplicate);
    let refused = store
        .submit(vec![
            event(json!({"key": "x1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1})),
            event(json!({"key": "x2", "type": "order", "channel": "shop", "order_id": "X",
                         "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}]})),
            event(json!({"key": "x3", "type": "ship", "channel": "shop", "order_id": "X",
                         "lines": [{"line_id": "1", "qty": 3}]})),
        ])
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(RequestError::Rejected { index: 2, .. })),
        "{refused:?}"
    );
    let rows = all_rows(&store).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.desired.quantity, r.desired_gen))
            .collect::<Vec<_>>(),
        [(7, 3), (5, 2)]
    );
}

/// Case 1b: Several events of one request: one write per listing, caused by the
/// earliest event that touched the SKU.
async fn one_request_writes_each_listing_once(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    let (seqs, before, after) = submit_timed(
        &store,
        vec![
            json!({"key": "a", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1}),
            json!({"key": "b", "type": "receipt", "sku": "TEE-L", "location": "AMS", "qty": 2}),
            json!({"key": "c", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 3}),
        ],
    )
    .await;
    let m = must_row(&store, "shop", "TEE-M").await;
    assert_eq!((m.desired.quantity, m.desired_gen), (4, 2));
    assert_eq!(m.caused_seq, seqs[0]);
    assert_between(m.caused_at, before, after, "caused_at");
    let l = must_row(&store, "shop", "TEE-L").await;
    assert_eq!((l.desired.quantity, l.desired_gen), (2, 2));
    assert_eq!(l.caused_seq, seqs[1]);

    // Changes that cancel out within one request leave the listing alone.
    submit_timed(
        &store,
        vec![
            json!({"key": "d", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 2}),
            json!({"key": "e", "type": "adjust", "sku": "TEE-M", "location": "AMS", "delta": -2, "reason": "recount"}),
        ],
    )
    .await;
    assert_eq!(must_row(&store, "shop", "TEE-M").await, m);
}

/// Case 1c: A quarantined event moves the listings when it is replayed.
async fn replayed_events_move_listings(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["NEW-1"]).await;
    let out = store
        .submit(vec![event(
            json!({"key": "q", "type": "receipt", "sku": "NEW-1", "location": "AMS", "qty": 4}),
        )])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out[0].status, EventStatus::Quarantined);
    let waiting = row(&store, "shop", "NEW-1").await;
    assert!(
        waiting.as_ref().is_none_or(|r| r.desired.quantity == 0),
        "{waiting:?}"
    );
    let before = ms(Utc::now());
    variants(&store, &["NEW-1"]).await;
    let after = Utc::now();
    let ledger = store
        .ledger(&stockd_store::LedgerQuery {
            sku: Some(sku("NEW-1")),
            after_seq: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1, "replayed");
    let r = must_row(&store, "shop", "NEW-1").await;
    assert_eq!(r.desired, in_stock(4));
    assert_eq!(r.caused_seq, Some(ledger[0].seq));
    assert_between(r.caused_at, before, after, "caused_at");
    assert!(r.dirty_since.is_some());
}

/// Case 2: Coalescing: one row per listing holds the latest desired state.
async fn coalesces_to_the_latest_state(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M"]).await;
    let first = must_row(&store, "shop", "TEE-M").await;
    let mut last_seq = 0;
    for (i, qty) in [2, 3, 4].into_iter().enumerate() {
        last_seq = receipt(&store, &format!("r{i}"), "TEE-M", "AMS", qty).await;
    }
    let r = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(r.desired, in_stock(9));
    assert_eq!(r.desired_gen, first.desired_gen + 3);
    assert_eq!(r.caused_seq, Some(last_seq));
    // Lagging since the first change that was not sent, not the latest.
    assert_eq!(r.dirty_since, first.dirty_since);
    let now = Utc::now();
    let due = due(&store, "shop", now).await;
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0], r);
    assert!(due_skus(&store, "bol", now).await.is_empty());
}

/// Case 3: Acknowledgement: clean until the next change; a stale ack cannot clean
/// a newer generation.
async fn ack_cleans_and_a_new_change_dirties(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let r = must_row(&store, "shop", "TEE-M").await;
    let at = ms(Utc::now());
    // Push times older than the budget window are dropped.
    store
        .outbox_record(vec![OutboxUpdate::Acked {
            channel: r.channel.clone(),
            sku: r.sku.clone(),
            gen: r.desired_gen,
            state: r.desired.clone(),
            channel_quantity: Some(5),
            at,
            counted: true,
            recent_before: vec![at - Duration::hours(25), at - Duration::hours(1)],
            channel_gen: r.channel_gen,
        }])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.recent_pushes,
        vec![at - Duration::hours(1), at]
    );
    store.outbox_record(vec![ack(&r, at)]).await.unwrap();
    let clean = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(clean.dirty_since, None);
    assert_eq!(clean.sent_gen, r.desired_gen);
    assert_eq!(clean.desired_gen, r.desired_gen);
    assert_eq!(clean.pushed.as_ref(), Some(&r.desired));
    assert_eq!(clean.pushed_at, Some(at));
    assert_eq!(clean.channel_quantity, Some(5));
    assert_eq!(clean.recent_pushes, vec![at]);
    assert_eq!(
        (
            clean.attempts,
            clean.next_attempt_at,
            clean.last_error.as_deref()
        ),
        (0, None, None)
    );
    let later = at + Duration::hours(1);
    assert_eq!(due_skus(&store, "shop", later).await, ["TEE-L"]);
    let pending = store.outbox(None, None, true, 100).await.unwrap();
    assert_eq!(keys(&pending), pairs(&[("shop", "TEE-L")]));

    // An ack of nothing sent: not counted against the budget (the earlier
    // push times stay) and, without a count, stockd's belief stays.
    let l = must_row(&store, "shop", "TEE-L").await;
    store
        .outbox_record(vec![OutboxUpdate::ChannelQuantity {
            channel: l.channel.clone(),
            sku: l.sku.clone(),
            quantity: Some(4),
        }])
        .await
        .unwrap();
    let at_l = at + Duration::seconds(1);
    store
        .outbox_record(vec![OutboxUpdate::Acked {
            channel: l.channel.clone(),
            sku: l.sku.clone(),
            gen: l.desired_gen,
            state: l.desired.clone(),
            channel_quantity: None,
            at: at_l,
            counted: false,
            recent_before: vec![at],
            channel_gen: l.channel_gen,
        }])
        .await
        .unwrap();
    let l2 = must_row(&store, "shop", "TEE-L").await;
    assert_eq!(l2.recent_pushes, vec![at]);
    assert_eq!(l2.dirty_since, None);
    assert_eq!(l2.sent_gen, l.desired_gen);
    assert_eq!(l2.channel_quantity, Some(4));

    // A new change makes the row dirty again, from the time of that change.
    let (seqs, before, after) = submit_timed(
        &store,
        vec![json!({"key": "r2", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 1})],
    )
    .await;
    let dirty = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(dirty.desired, in_stock(6));
    assert_eq!(dirty.desired_gen, r.desired_gen + 1);
    assert_eq!(dirty.sent_gen, r.desired_gen);
    assert_eq!(dirty.caused_seq, seqs[0]);
    let since = dirty.dirty_since.expect("dirty again");
    assert_between(since, before, after, "dirty_since");
    // What the channel was told stays as acknowledged.
    assert_eq!(dirty.pushed, clean.pushed);
    assert_eq!(dirty.channel_quantity, Some(5));
    assert_eq!(due_skus(&store, "shop", later).await, ["TEE-M"]);

    // The dispatcher read `dirty` (gen N); gen N+1 commits before its ack:
    // the row stays dirty, from the same time.
    receipt(&store, "r3", "TEE-M", "AMS", 1).await;
    store
        .outbox_record(vec![ack(&dirty, at + Duration::seconds(2))])
        .await
        .unwrap();
    let still = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(still.desired, in_stock(7));
    assert_eq!(still.desired_gen, dirty.desired_gen + 1);
    assert_eq!(still.sent_gen, dirty.desired_gen);
    assert_eq!(still.dirty_since, Some(since));
    assert_eq!(still.pushed.as_ref(), Some(&dirty.desired));
    assert_eq!(due_skus(&store, "shop", later).await, ["TEE-M"]);

    // The ack of the newest generation cleans it; a late ack of an older one
    // does not move sent_gen back nor make it dirty.
    store
        .outbox_record(vec![ack(&still, at + Duration::seconds(3))])
        .await
        .unwrap();
    let synced = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(
        (synced.dirty_since, synced.sent_gen),
        (None, still.desired_gen)
    );
    store
        .outbox_record(vec![ack(&dirty, at + Duration::seconds(4))])
        .await
        .unwrap();
    let after_late = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(after_late.sent_gen, still.desired_gen);
    assert_eq!(after_late.dirty_since, None);
    assert!(due_skus(&store, "shop", later).await.is_empty());
}

/// Case 4: Failed and deferred attempts wait for their time.
async fn failed_and_deferred_wait_their_turn(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let t = ms(Utc::now()) + Duration::minutes(1);
    assert_eq!(due_skus(&store, "shop", t).await.len(), 2);

    let retry_at = t + Duration::seconds(30);
    store
        .outbox_record(vec![OutboxUpdate::Failed {
            channel: ch("shop"),
            sku: sku("TEE-M"),
            attempts: 3,
            next_attempt_at: retry_at,
            error: "HTTP 502".into(),
        }])
        .await
        .unwrap();
    let failed = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.next_attempt_at, Some(retry_at));
    assert_eq!(failed.last_error.as_deref(), Some("HTTP 502"));
    assert!(failed.dirty_since.is_some());
    assert_eq!(due_skus(&store, "shop", t).await, ["TEE-L"]);
    assert_eq!(
        due_skus(&store, "shop", retry_at - Duration::milliseconds(1)).await,
        ["TEE-L"]
    );
    let mut at_retry = due_skus(&store, "shop", retry_at).await;
    at_retry.sort();
    assert_eq!(at_retry, ["TEE-L", "TEE-M"]);
    // Still pending in the listing, whatever its next attempt.
    assert_eq!(store.outbox(None, None, true, 100).await.unwrap().len(), 2);

    // Deferred: no attempt counted, the note replaces the error.
    let until = t + Duration::minutes(5);
    store
        .outbox_record(vec![
            OutboxUpdate::Deferred {
                channel: ch("shop"),
                sku: sku("TEE-M"),
                until,
                note: Some("change budget".into()),
            },
            OutboxUpdate::Deferred {
                channel: ch("shop"),
                sku: sku("TEE-L"),
                until,
                note: None,
            },
        ])
        .await
        .unwrap();
    let deferred = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(deferred.attempts, 3);
    assert_eq!(deferred.next_attempt_at, Some(until));
    assert_eq!(deferred.last_error.as_deref(), Some("change budget"));
    let l = must_row(&store, "shop", "TEE-L").await;
    assert_eq!((l.attempts, l.last_error.as_deref()), (0, None));
    assert!(due_skus(&store, "shop", retry_at).await.is_empty());
    assert!(due_skus(&store, "shop", until - Duration::milliseconds(1))
        .await
        .is_empty());
    assert_eq!(due_skus(&store, "shop", until).await.len(), 2);

    // An ack resets the attempt state.
    store
        .outbox_record(vec![ack(&deferred, until)])
        .await
        .unwrap();
    let acked = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(
        (acked.attempts, acked.next_attempt_at, acked.last_error),
        (0, None, None)
    );
    assert_eq!(due_skus(&store, "shop", until).await, ["TEE-L"]);
}

/// Case 4b: Due rows come oldest first (then by SKU) and `limit` holds.
async fn due_rows_oldest_first(store: Shared) {
    setup(&store).await;
    list(&store, "bol", &["TEE-S", "TEE-M", "TEE-L"]).await;
    // Clean every row, then dirty them again one by one.
    let rows = all_rows(&store).await;
    let at = ms(Utc::now());
    store
        .outbox_record(rows.iter().map(|r| ack(r, at)).collect())
        .await
        .unwrap();
    assert!(due_skus(&store, "bol", at).await.is_empty());
    for (i, s) in ["TEE-S", "TEE-M", "TEE-L"].into_iter().enumerate() {
        receipt(&store, &format!("r{i}"), s, "RTM", 1).await;
    }
    let now = Utc::now() + Duration::hours(1);
    let due = due(&store, "bol", now).await;
    assert_eq!(due.len(), 3);
    let mut expected = due.clone();
    expected.sort_by_key(|r| (r.dirty_since, r.sku.as_str().to_string()));
    assert_eq!(keys(&due), keys(&expected));
    // Never older than the change before it.
    let s = due.iter().find(|r| r.sku.as_str() == "TEE-S").unwrap();
    let l = due.iter().find(|r| r.sku.as_str() == "TEE-L").unwrap();
    assert!(s.dirty_since <= l.dirty_since);
    let first = store.outbox_due(&ch("bol"), now, 1).await.unwrap();
    assert_eq!(keys(&first), keys(&due[..1]));
}

/// Case 5: The dead-letter queue: parked rows wait for retry or discard.
async fn dead_letters_park_retry_and_discard(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let r = must_row(&store, "shop", "TEE-M").await;
    let t = ms(Utc::now()) + Duration::minutes(1);
    store
        .outbox_record(vec![OutboxUpdate::Failed {
            channel: ch("shop"),
            sku: sku("TEE-M"),
            attempts: 6,
            next_attempt_at: t + Duration::hours(1),
            error: "HTTP 500".into(),
        }])
        .await
        .unwrap();
    let dead = letter(&r, "invalid_item", t);
    store
        .outbox_record(vec![OutboxUpdate::Dead {
            letter: dead.clone(),
        }])
        .await
        .unwrap();
    let letters = store.dead_letters(0, 100).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].id > 0);
    assert_eq!(
        letters[0],
        DeadLetter {
            id: letters[0].id,
            ..dead.clone()
        }
    );
    let parked = must_row(&store, "shop", "TEE-M").await;
    assert!(parked.parked);
    assert_eq!(parked.attempts, 7);
    assert_eq!(
        parked.last_error.as_deref(),
        Some("invalid_item: invalid_item from the channel")
    );
    assert!(parked.dirty_since.is_some());
    let far = t + Duration::days(1);
    assert_eq!(due_skus(&store, "shop", far).await, ["TEE-L"]);
    // Parked rows are still pending.
    let pending = store
        .outbox(Some(&ch("shop")), None, true, 100)
        .await
        .unwrap();
    assert_eq!(
        keys(&pending),
        pairs(&[("shop", "TEE-L"), ("shop", "TEE-M")])
    );
    // A change of a parked listing is a newer state: it is sent (the
    // letter belongs to the older state).
    receipt(&store, "r2", "TEE-M", "AMS", 1).await;
    let changed = must_row(&store, "shop", "TEE-M").await;
    assert!(changed.parked && changed.supersedes_dead_letter());
    assert_eq!(changed.desired_gen, r.desired_gen + 1);
    let mut due_far = due_skus(&store, "shop", far).await;
    due_far.sort();
    assert_eq!(due_far, ["TEE-L", "TEE-M"]);

    // Retry: back in line at once, attempts reset, letter gone.
    assert!(store.dead_letter_retry(letters[0].id).await.unwrap());
    let retried = must_row(&store, "shop", "TEE-M").await;
    assert!(!retried.parked);
    assert_eq!((retried.attempts, retried.next_attempt_at), (0, None));
    assert_eq!(retried.dirty_since, parked.dirty_since);
    assert_eq!(retried.desired, in_stock(6));
    assert!(store.dead_letters(0, 100).await.unwrap().is_empty());
    let mut due_now = due_skus(&store, "shop", Utc::now()).await;
    due_now.sort();
    assert_eq!(due_now, ["TEE-L", "TEE-M"]);
    assert!(!store.dead_letter_retry(letters[0].id).await.unwrap());

    // A second letter, discarded: the update is given up, the row clean.
    let dead2 = letter(&retried, "gone", t + Duration::seconds(1));
    store
        .outbox_record(vec![OutboxUpdate::Dead { letter: dead2 }])
        .await
        .unwrap();
    let letters = store.dead_letters(0, 100).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, "gone");
    assert_eq!(letters[0].desired_gen, retried.desired_gen);
    assert!(must_row(&store, "shop", "TEE-M").await.parked);
    assert!(store.dead_letter_discard(letters[0].id).await.unwrap());
    let discarded = must_row(&store, "shop", "TEE-M").await;
    assert!(!discarded.parked);
    assert_eq!(discarded.sent_gen, discarded.desired_gen);
    assert_eq!(discarded.dirty_since, None);
    assert_eq!((discarded.attempts, discarded.next_attempt_at), (0, None));
    assert_eq!(due_skus(&store, "shop", far).await, ["TEE-L"]);
    assert!(store.dead_letters(0, 100).await.unwrap().is_empty());
    assert!(!store.dead_letter_discard(letters[0].id).await.unwrap());

    // Unknown ids.
    assert!(!store.dead_letter_retry(987_654).await.unwrap());
    assert!(!store.dead_letter_discard(987_654).await.unwrap());

    // A later change is sent again.
    receipt(&store, "r3", "TEE-M", "AMS", 1).await;
    let mut due_now = due_skus(&store, "shop", Utc::now()).await;
    due_now.sort();
    assert_eq!(due_now, ["TEE-L", "TEE-M"]);
}

/// Case 5b: Two letters of one listing: it stays parked until both are gone;
/// pagination of the queue by id.
async fn dead_letters_of_one_listing(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    let t = ms(Utc::now());
    let m = must_row(&store, "shop", "TEE-M").await;
    let l = must_row(&store, "shop", "TEE-L").await;
    store
        .outbox_record(vec![
            OutboxUpdate::Dead {
                letter: letter(&m, "first", t),
            },
            OutboxUpdate::Dead {
                letter: letter(&m, "second", t),
            },
            OutboxUpdate::Dead {
                letter: letter(&l, "third", t),
            },
        ])
        .await
        .unwrap();
    let all = store.dead_letters(0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    assert!(all[0].id < all[1].id && all[1].id < all[2].id);
    let page = store.dead_letters(all[0].id, 1).await.unwrap();
    assert_eq!(page, all[1..2]);
    assert!(store.dead_letters(all[2].id, 10).await.unwrap().is_empty());

    assert!(store.dead_letter_retry(all[0].id).await.unwrap());
    assert!(
        must_row(&store, "shop", "TEE-M").await.parked,
        "one letter left"
    );
    assert!(due_skus(&store, "shop", t + Duration::days(1))
        .await
        .is_empty());
    assert!(store.dead_letter_retry(all[1].id).await.unwrap());
    assert!(!must_row(&store, "shop", "TEE-M").await.parked);
    assert_eq!(
        due_skus(&store, "shop", t + Duration::days(1)).await,
        ["TEE-M"]
    );
    assert!(must_row(&store, "shop", "TEE-L").await.parked);
}

/// Case 5c: Revival of a channel's transient letters: their listings go back
/// in line (latest state, attempts reset) and the letters go; a permanent
/// letter keeps its listing parked; other channels are untouched.
async fn transient_dead_letters_revive(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L", "TEE-S"]).await;
    list(&store, "bol", &["TEE-M"]).await;
    let t = ms(Utc::now());
    let m = must_row(&store, "shop", "TEE-M").await;
    let l = must_row(&store, "shop", "TEE-L").await;
    let s = must_row(&store, "shop", "TEE-S").await;
    let bol_m = must_row(&store, "bol", "TEE-M").await;
    let transient = |row: &OutboxRow, code: &str| DeadLetter {
        transient: true,
        ..letter(row, code, t)
    };
    store
        .outbox_record(vec![
            OutboxUpdate::Dead {
                letter: transient(&m, "http_503"),
            },
            // Transient, then permanent: the permanent one keeps it parked.
            OutboxUpdate::Dead {
                letter: transient(&l, "timeout"),
            },
            OutboxUpdate::Dead {
                letter: letter(&l, "invalid_item", t),
            },
            OutboxUpdate::Dead {
                letter: letter(&s, "invalid_item", t),
            },
            OutboxUpdate::Dead {
                letter: transient(&bol_m, "http_502"),
            },
        ])
        .await
        .unwrap();
    let letters = store.dead_letters(0, 100).await.unwrap();
    assert_eq!(
        letters.iter().map(|d| d.transient).collect::<Vec<_>>(),
        [true, true, false, false, true]
    );
    let far = t + Duration::days(1);
    assert!(due_skus(&store, "shop", far).await.is_empty());

    let revived = store
        .dead_letters_revive(&ch("shop"), t + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(revived, 1);
    let back = must_row(&store, "shop", "TEE-M").await;
    assert!(!back.parked);
    assert_eq!((back.attempts, back.next_attempt_at), (0, None));
    assert_eq!(back.dirty_since, m.dirty_since);
    assert_eq!(due_skus(&store, "shop", far).await, ["TEE-M"]);
    assert!(must_row(&store, "shop", "TEE-L").await.parked);
    assert!(must_row(&store, "shop", "TEE-S").await.parked);
    assert!(must_row(&store, "bol", "TEE-M").await.parked);
    let left = store.dead_letters(0, 100).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|d| (d.channel.as_str(), d.code.as_str()))
            .collect::<Vec<_>>(),
        [
            ("shop", "timeout"),
            ("shop", "invalid_item"),
            ("shop", "invalid_item"),
            ("bol", "http_502")
        ]
    );
    // Nothing left to revive on the channel: a second call is a no-op.
    let again = store
        .dead_letters_revive(&ch("shop"), t + Duration::minutes(6))
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(store.dead_letters(0, 100).await.unwrap().len(), 4);
}

/// Case 6: Kits move with their components and components with their kits.
async fn kits_and_components_move_together(store: Shared) {
    setup(&store).await;
    variants(&store, &["KIT", "PART-A", "PART-B"]).await;
    store
        .put_bundle(
            Bundle {
                kit: sku("KIT"),
                components: vec![
                    BundleComponent {
                        sku: sku("PART-A"),
                        qty: 2,
                    },
                    BundleComponent {
                        sku: sku("PART-B"),
                        qty: 1,
                    },
                ],
            },
            "ops",
        )
        .await
        .unwrap();
    store.refresh_desired(Some(vec![sku("KIT")])).await.unwrap();
    list(&store, "shop", &["KIT", "PART-A"]).await;
    assert_eq!(must_row(&store, "shop", "KIT").await.desired, in_stock(0));
    assert_eq!(
        must_row(&store, "shop", "PART-A").await.desired,
        in_stock(0)
    );

    // A component alone: the kit still cannot be built.
    let a = receipt(&store, "ra", "PART-A", "AMS", 5).await;
    let kit = must_row(&store, "shop", "KIT").await;
    assert_eq!((kit.desired.quantity, kit.desired_gen), (0, 1));
    let part = must_row(&store, "shop", "PART-A").await;
    assert_eq!((part.desired.quantity, part.desired_gen), (5, 2));
    assert_eq!(part.caused_seq, Some(a));

    // The unlisted component arrives: the kit row moves in the same commit.
    let b = receipt(&store, "rb", "PART-B", "AMS", 3).await;
    let kit = must_row(&store, "shop", "KIT").await;
    assert_eq!(kit.desired, in_stock(2));
    assert_eq!((kit.desired_gen, kit.caused_seq), (2, Some(b)));
    assert!(row(&store, "shop", "PART-B").await.is_none());
    assert_eq!(must_row(&store, "shop", "PART-A").await.desired_gen, 2);

    // More of A: the kit row follows A's.
    let a2 = receipt(&store, "ra2", "PART-A", "AMS", 1).await;
    let kit = must_row(&store, "shop", "KIT").await;
    assert_eq!(
        (kit.desired.quantity, kit.desired_gen, kit.caused_seq),
        (3, 3, Some(a2))
    );
    let part = must_row(&store, "shop", "PART-A").await;
    assert_eq!((part.desired.quantity, part.desired_gen), (6, 3));

    // An order of the kit reserves its components: A's row goes down too.
    let order = submit_one(
        &store,
        json!({"key": "o", "type": "order", "channel": "shop", "order_id": "K1",
               "lines": [{"line_id": "1", "sku": "KIT", "qty": 2}]}),
    )
    .await;
    let part = must_row(&store, "shop", "PART-A").await;
    assert_eq!(part.desired, in_stock(2));
    assert_eq!((part.desired_gen, part.caused_seq), (4, Some(order)));
    let kit = must_row(&store, "shop", "KIT").await;
    assert_eq!(kit.desired, in_stock(1));
    assert_eq!((kit.desired_gen, kit.caused_seq), (4, Some(order)));

    // Cancelling gives the components back.
    let cancel = submit_one(
        &store,
        json!({"key": "c", "type": "cancel", "channel": "shop", "order_id": "K1"}),
    )
    .await;
    let part = must_row(&store, "shop", "PART-A").await;
    assert_eq!((part.desired.quantity, part.caused_seq), (6, Some(cancel)));
    let kit = must_row(&store, "shop", "KIT").await;
    assert_eq!((kit.desired.quantity, kit.caused_seq), (3, Some(cancel)));
}

/// Case 7: A rules version recomputes every listing.
async fn rules_versions_recompute_every_listing(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    list(&store, "bol", &["TEE-M"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    receipt(&store, "r2", "TEE-L", "AMS", 1).await;
    let before: Vec<OutboxRow> = all_rows(&store).await;
    assert_eq!(
        before
            .iter()
            .map(|r| r.desired.quantity)
            .collect::<Vec<_>>(),
        [5, 1, 5]
    );
    // Clean shop/TEE-L so a version-only change can be seen to leave it clean.
    let l = must_row(&store, "shop", "TEE-L").await;
    let at = ms(Utc::now());
    store.outbox_record(vec![ack(&l, at)]).await.unwrap();

    let mut doc = stockd_core::rules::RulesDocument::default();
    doc.defaults.safety_stock = Some(2);
    let v1 = store
        .add_rules_version(doc.clone(), "safety".into(), "ops".into())
        .await
        .unwrap();
    let t0 = ms(Utc::now());
    let written = store.refresh_desired(None).await.unwrap();
    let t1 = Utc::now();
    assert_eq!(written, 3);
    let rows = all_rows(&store).await;
    assert_eq!(keys(&rows), keys(&before));
    for (old, new) in before.iter().zip(&rows) {
        assert_eq!(new.rules_version, Some(v1.version));
        assert_eq!(new.desired, in_stock((old.desired.quantity - 2).max(0)));
        assert_eq!(new.desired_gen, old.desired_gen + 1);
        assert_eq!(new.caused_seq, None, "caused by the rules, not an event");
        assert_between(new.caused_at, t0, t1, "caused_at");
    }
    let l = must_row(&store, "shop", "TEE-L").await;
    let since = l.dirty_since.expect("a changed value lags again");
    assert_between(since, t0, t1, "dirty_since");

    // Nothing changes: nothing is written.
    assert_eq!(store.refresh_desired(None).await.unwrap(), 0);
    assert_eq!(all_rows(&store).await, rows);

    // Clean every row, then a version that moves no value.
    let at = ms(Utc::now());
    store
        .outbox_record(rows.iter().map(|r| ack(r, at)).collect())
        .await
        .unwrap();
    let acked = all_rows(&store).await;
    doc.defaults.max_exposed = Some(1000);
    let v2 = store
        .add_rules_version(doc.clone(), "cap".into(), "ops".into())
        .await
        .unwrap();
    assert_eq!(store.refresh_desired(None).await.unwrap(), 3);
    let rows = all_rows(&store).await;
    for (old, new) in acked.iter().zip(&rows) {
        assert_eq!(new.rules_version, Some(v2.version));
        assert_eq!(
            OutboxRow {
                rules_version: old.rules_version,
                ..new.clone()
            },
            *old,
            "only the rules version moves"
        );
    }
    assert!(due_skus(&store, "shop", at + Duration::hours(1))
        .await
        .is_empty());

    // Events under the active version carry it.
    receipt(&store, "r3", "TEE-M", "AMS", 1).await;
    let m = must_row(&store, "shop", "TEE-M").await;
    assert_eq!((m.desired.quantity, m.rules_version), (4, Some(v2.version)));
}

/// Case 7b: A whole-catalog refresh goes page by page over every listed SKU.
async fn refresh_covers_every_page(store: Shared) {
    location(&store, "AMS", true, 1).await;
    channel(&store, "shop", ChannelKind::Shopify, None).await;
    let names: Vec<String> = (0..1205).map(|i| format!("SKU-{i:05}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    variants(&store, &names).await;
    let events = names
        .iter()
        .map(|s| json!({"key": format!("r-{s}"), "type": "receipt", "sku": s, "location": "AMS", "qty": 3}))
        .collect();
    submit_timed(&store, events).await;
    list(&store, "shop", &names).await;
    let mut doc = stockd_core::rules::RulesDocument::default();
    doc.defaults.safety_stock = Some(1);
    let v = store
        .add_rules_version(doc, "safety".into(), "ops".into())
        .await
        .unwrap();
    assert_eq!(store.refresh_desired(None).await.unwrap(), names.len());
    let rows = all_rows(&store).await;
    assert_eq!(rows.len(), 1000, "one page of the listing");
    let rows = store
        .outbox(Some(&ch("shop")), None, false, 5000)
        .await
        .unwrap();
    assert_eq!(rows.len(), names.len());
    for r in &rows {
        assert_eq!(
            (r.desired.quantity, r.rules_version),
            (2, Some(v.version)),
            "{r:?}"
        );
        assert_eq!(r.desired_gen, 2);
    }
}

/// Case 8: What the channel holds moves with its own sales and can be forgotten.
async fn channel_quantity_moves(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let r = must_row(&store, "shop", "TEE-M").await;
    // Moving an unknown quantity keeps it unknown.
    store
        .outbox_channel_moved(&ch("shop"), vec![(sku("TEE-M"), Some(-1))])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        None
    );

    // An acknowledgement read before a move of the channel's own count
    // neither cleans the row nor overwrites the moved count: the dispatcher
    // must look again (its decision did not see the sale).
    store
        .outbox_record(vec![ack(&r, ms(Utc::now()))])
        .await
        .unwrap();
    let raced = must_row(&store, "shop", "TEE-M").await;
    assert!(raced.dirty_since.is_some(), "{raced:?}");
    assert_eq!(raced.channel_quantity, None);
    assert_eq!(raced.sent_gen, r.desired_gen);
    let r = raced;
    store
        .outbox_record(vec![ack(&r, ms(Utc::now()))])
        .await
        .unwrap();
    let acked = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(acked.channel_quantity, Some(5));
    assert_eq!(acked.dirty_since, None);
    let moved_at = ms(Utc::now());
    store
        .outbox_channel_moved(
            &ch("shop"),
            vec![
                (sku("TEE-M"), Some(-2)),
                (sku("TEE-M"), Some(-1)),
                (sku("NOT-LISTED"), Some(4)),
            ],
        )
        .await
        .unwrap();
    let moved_by = Utc::now();
    let moved = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(moved.channel_quantity, Some(2));
    // The listing is looked at again (the channel may now differ from the
    // desired state; it lags since the move); nothing else of the row moves.
    let since = moved.dirty_since.expect("looked at again");
    assert_between(since, moved_at, moved_by, "dirty_since");
    assert_eq!(
        moved,
        OutboxRow {
            channel_quantity: Some(2),
            channel_gen: acked.channel_gen + 2,
            dirty_since: Some(since),
            unacked_since: Some(since),
            ..acked.clone()
        }
    );
    assert_eq!(due_skus(&store, "shop", moved_by).await.len(), 2);
    assert!(row(&store, "shop", "NOT-LISTED").await.is_none());
    // Another channel's listing of the same SKU is not touched.
    store
        .outbox_channel_moved(&ch("bol"), vec![(sku("TEE-M"), Some(10))])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        Some(2)
    );

    store
        .outbox_channel_moved(&ch("shop"), vec![(sku("TEE-M"), Some(3))])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        Some(5)
    );
    store
        .outbox_channel_moved(&ch("shop"), vec![(sku("TEE-M"), None)])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        None
    );

    // Set outright by a read of the channel's count.
    store
        .outbox_record(vec![OutboxUpdate::ChannelQuantity {
            channel: ch("shop"),
            sku: sku("TEE-L"),
            quantity: Some(-3),
        }])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-L").await.channel_quantity,
        Some(-3)
    );
    store
        .outbox_channel_moved(&ch("shop"), vec![(sku("TEE-L"), Some(3))])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-L").await.channel_quantity,
        Some(0)
    );
    store
        .outbox_record(vec![OutboxUpdate::ChannelQuantity {
            channel: ch("shop"),
            sku: sku("TEE-L"),
            quantity: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-L").await.channel_quantity,
        None
    );
}

/// Case 9: Pages in (channel, sku) order, with the channel and pending filters.
async fn outbox_pages_and_filters(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-S", "TEE-M", "TEE-L"]).await;
    list(&store, "bol", &["TEE-M", "TEE-L"]).await;
    let every = pairs(&[
        ("bol", "TEE-L"),
        ("bol", "TEE-M"),
        ("shop", "TEE-L"),
        ("shop", "TEE-M"),
        ("shop", "TEE-S"),
    ]);
    assert_eq!(keys(&all_rows(&store).await), every);

    // Walk every row two at a time.
    let mut seen = Vec::new();
    let mut after: Option<(ChannelId, Sku)> = None;
    loop {
        let page = store
            .outbox(None, after.as_ref().map(|(c, s)| (c, s)), false, 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.channel.clone(), last.sku.clone()));
        seen.extend(keys(&page));
    }
    assert_eq!(seen, every);

    // One channel, from the start and after a row.
    let shop = store
        .outbox(Some(&ch("shop")), None, false, 100)
        .await
        .unwrap();
    assert_eq!(keys(&shop), every[2..]);
    let (shop_id, tee_l) = (ch("shop"), sku("TEE-L"));
    let rest = store
        .outbox(Some(&shop_id), Some((&shop_id, &tee_l)), false, 1)
        .await
        .unwrap();
    assert_eq!(keys(&rest), pairs(&[("shop", "TEE-M")]));
    // A cursor on an earlier channel starts the filtered one from its first row.
    let (bol_id, tee_m) = (ch("bol"), sku("TEE-M"));
    let from_bol = store
        .outbox(Some(&shop_id), Some((&bol_id, &tee_m)), false, 100)
        .await
        .unwrap();
    assert_eq!(keys(&from_bol), every[2..]);
    let bol = store
        .outbox(Some(&bol_id), Some((&bol_id, &tee_m)), false, 100)
        .await
        .unwrap();
    assert!(bol.is_empty());
    assert!(store
        .outbox(Some(&ch("amazon")), None, false, 100)
        .await
        .unwrap()
        .is_empty());

    // Pending only: clean two rows, park one.
    let at = ms(Utc::now());
    let rows = all_rows(&store).await;
    let by_key = |c: &str, s: &str| {
        rows.iter()
            .find(|r| r.channel.as_str() == c && r.sku.as_str() == s)
            .unwrap()
            .clone()
    };
    store
        .outbox_record(vec![
            ack(&by_key("bol", "TEE-M"), at),
            ack(&by_key("shop", "TEE-L"), at),
            ack(&by_key("shop", "TEE-S"), at),
            OutboxUpdate::Dead {
                letter: letter(&by_key("shop", "TEE-S"), "refused", at),
            },
        ])
        .await
        .unwrap();
    let pending = store.outbox(None, None, true, 100).await.unwrap();
    assert_eq!(
        keys(&pending),
        pairs(&[("bol", "TEE-L"), ("shop", "TEE-M"), ("shop", "TEE-S")])
    );
    let pending = store
        .outbox(None, Some((&bol_id, &tee_l)), true, 1)
        .await
        .unwrap();
    assert_eq!(keys(&pending), pairs(&[("shop", "TEE-M")]));
    let pending = store.outbox(Some(&bol_id), None, true, 100).await.unwrap();
    assert_eq!(keys(&pending), pairs(&[("bol", "TEE-L")]));
    // All rows are still listed without the filter.
    assert_eq!(keys(&all_rows(&store).await), every);

    // outbox_rows: only the rows asked for, of that channel.
    let mut some = store
        .outbox_rows(&shop_id, &[sku("TEE-S"), sku("TEE-M"), sku("NOPE")])
        .await
        .unwrap();
    some.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(keys(&some), pairs(&[("shop", "TEE-M"), ("shop", "TEE-S")]));
    assert!(store
        .outbox_rows(&bol_id, &[sku("TEE-S")])
        .await
        .unwrap()
        .is_empty());
    assert!(store.outbox_rows(&bol_id, &[]).await.unwrap().is_empty());
}

/// Case 10: Rows survive a restart; the start-up recompute leaves unchanged rows alone.
async fn survives_restart(
    open: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Shared>>>,
) {
    let store = open().await;
    setup(&store).await;
    let mut doc = stockd_core::rules::RulesDocument::default();
    doc.defaults.safety_stock = Some(1);
    store
        .add_rules_version(doc, "safety".into(), "ops".into())
        .await
        .unwrap();
    store.refresh_desired(None).await.unwrap();
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    list(&store, "bol", &["TEE-M"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    receipt(&store, "r2", "TEE-L", "AMS", 2).await;
    let at = ms(Utc::now());
    let l = must_row(&store, "shop", "TEE-L").await;
    let m = must_row(&store, "bol", "TEE-M").await;
    store
        .outbox_record(vec![
            ack(&l, at),
            OutboxUpdate::Failed {
                channel: ch("bol"),
                sku: sku("TEE-M"),
                attempts: 2,
                next_attempt_at: at + Duration::minutes(3),
                error: "HTTP 503".into(),
            },
            OutboxUpdate::Dead {
                letter: letter(&m, "gone", at),
            },
        ])
        .await
        .unwrap();
    let rows = all_rows(&store).await;
    let letters = store.dead_letters(0, 100).await.unwrap();
    assert_eq!(rows.len(), 3);
    store.close().await;

    let store = open().await;
    for _ in 0..200 {
        if store.recompute_done() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(store.recompute_done(), "the start-up recompute ends");
    assert_eq!(all_rows(&store).await, rows, "same rows after a restart");
    assert_eq!(store.dead_letters(0, 100).await.unwrap(), letters);
    // The writer is live again and keeps counting from where it was.
    receipt(&store, "r3", "TEE-M", "AMS", 1).await;
    let m = must_row(&store, "shop", "TEE-M").await;
    let before = rows
        .iter()
        .find(|r| r.channel.as_str() == "shop" && r.sku.as_str() == "TEE-M")
        .unwrap();
    assert_eq!(m.desired.quantity, 5);
    assert_eq!(m.desired_gen, before.desired_gen + 1);
    assert_eq!(m.dirty_since, before.dirty_since);
    store.close().await;
}

// ----- instantiation ---------------------------------------------------------

async fn adjust(store: &Shared, key: &str, s: &str, delta: i64) {
    submit_one(
        store,
        json!({"key": key, "type": "adjust", "sku": s, "location": "AMS", "delta": delta,
               "reason": "recount"}),
    )
    .await;
}

/// Case 4c: Protective updates (they lower what the channel shows) come
/// before any other, oldest first within each class; the class follows
/// the desired state, the acknowledged state and the channel's own count.
async fn protective_updates_first(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-S", "TEE-M", "TEE-L"]).await;
    for s in ["TEE-S", "TEE-M", "TEE-L"] {
        receipt(&store, &format!("r-{s}"), s, "AMS", 5).await;
    }
    let rows = all_rows(&store).await;
    let at = ms(Utc::now());
    store
        .outbox_record(rows.iter().map(|r| ack(r, at)).collect())
        .await
        .unwrap();
    // An increase first, then a decrease, then the channel's count moving
    // above the desired state (it restocked on its own).
    receipt(&store, "up", "TEE-S", "AMS", 2).await;
    adjust(&store, "down", "TEE-M", -2).await;
    // Dirty times are in milliseconds and a tie is broken by SKU (TEE-L
    // before TEE-M): let a millisecond pass so "oldest first" decides.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store
        .outbox_channel_moved(&ch("shop"), vec![(sku("TEE-L"), Some(3))])
        .await
        .unwrap();
    let now = Utc::now() + Duration::hours(1);
    let due = due(&store, "shop", now).await;
    let classes: Vec<(String, bool)> = due
        .iter()
        .map(|r| (r.sku.as_str().to_string(), r.protective))
        .collect();
    assert_eq!(
        classes,
        [
            ("TEE-M".to_string(), true),
            ("TEE-L".to_string(), true),
            ("TEE-S".to_string(), false)
        ]
    );
    assert!(due[0].dirty_since <= due[1].dirty_since);
    let first = store.outbox_due(&ch("shop"), now, 1).await.unwrap();
    assert_eq!(keys(&first), [("shop".to_string(), "TEE-M".to_string())]);
    // Acknowledged, the decrease is no longer protective; a later increase
    // of the same listing is not either.
    let m = due[0].clone();
    store.outbox_record(vec![ack(&m, now)]).await.unwrap();
    receipt(&store, "up2", "TEE-M", "AMS", 1).await;
    let m = must_row(&store, "shop", "TEE-M").await;
    assert!(!m.protective && m.dirty_since.is_some(), "{m:?}");
    // Out of stock is protective whatever the count.
    adjust(&store, "gone", "TEE-S", -7).await;
    let gone = must_row(&store, "shop", "TEE-S").await;
    assert_eq!(gone.desired.availability, Availability::OutOfStock);
    assert!(gone.protective);
}

/// Case 5b': An order the channel took moves stockd's belief of the
/// channel's count in the order's own transaction: a dispatcher woken by the
/// commit never sees the stock gone but the channel's count unmoved (it
/// would push what the channel already shows, as a protective update). A
/// redelivered order moves nothing; an order waiting in quarantine moves
/// nothing either.
async fn channel_order_moves_the_count_in_its_commit(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let r = must_row(&store, "shop", "TEE-M").await;
    store
        .outbox_record(vec![ack(&r, ms(Utc::now()))])
        .await
        .unwrap();
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        Some(5)
    );
    let order = |key: &str, order_id: &str, s: &str| {
        event(
            json!({"key": key, "type": "order", "channel": "shop", "order_id": order_id,
                     "lines": [{"line_id": "1", "sku": s, "qty": 2}]}),
        )
    };
    let sold = vec![(sku("TEE-M"), Some(-2))];
    let results = store
        .submit_channel_order(vec![order("o1", "A1", "TEE-M")], &ch("shop"), sold.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results[0].status, EventStatus::Applied);
    let after = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(after.desired.quantity, 3);
    assert_eq!(after.channel_quantity, Some(3));
    assert!(!after.protective, "{after:?}");

    let again = store
        .submit_channel_order(vec![order("o1", "A1", "TEE-M")], &ch("shop"), sold)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again[0].status, EventStatus::Duplicate);
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        Some(3)
    );

    // An order of a SKU stockd does not know yet waits in quarantine.
    let waiting = store
        .submit_channel_order(
            vec![order("o2", "A2", "TEE-XL")],
            &ch("shop"),
            vec![(sku("TEE-M"), Some(-1))],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting[0].status, EventStatus::Quarantined);
    assert_eq!(
        must_row(&store, "shop", "TEE-M").await.channel_quantity,
        Some(3)
    );
}

/// Case 5c: A dead letter belongs to a state: a newer desired state of a
/// parked listing is sent; the old letter stays, marked superseded; the
/// acknowledgement of the newer state ends the parking.
async fn parked_listing_sends_a_newer_state(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let shown = must_row(&store, "shop", "TEE-M").await;
    store
        .outbox_record(vec![ack(&shown, ms(Utc::now()))])
        .await
        .unwrap();
    // An increase the channel refuses for good.
    receipt(&store, "r2", "TEE-M", "AMS", 2).await;
    let r = must_row(&store, "shop", "TEE-M").await;
    let t = ms(Utc::now());
    store
        .outbox_record(vec![OutboxUpdate::Dead {
            letter: letter(&r, "invalid_item", t),
        }])
        .await
        .unwrap();
    let far = t + Duration::days(1);
    assert!(due_skus(&store, "shop", far).await.is_empty());
    let letters = store.dead_letters(0, 10).await.unwrap();
    assert!(!letters[0].superseded);
    // A decrease below what the channel shows (5) arrives: it is due
    // although the listing is parked.
    adjust(&store, "down", "TEE-M", -5).await;
    let due = due(&store, "shop", far).await;
    assert_eq!(due.len(), 1);
    let newer = due[0].clone();
    assert!(newer.parked && newer.supersedes_dead_letter() && newer.protective);
    assert_eq!(newer.desired.quantity, 2);
    let letters = store.dead_letters(0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].superseded, "{letters:?}");
    // A failed attempt of the newer state counts from its own start.
    store
        .outbox_record(vec![OutboxUpdate::Failed {
            channel: ch("shop"),
            sku: sku("TEE-M"),
            attempts: 1,
            next_attempt_at: t,
            error: "timeout: slow".into(),
        }])
        .await
        .unwrap();
    let failed = must_row(&store, "shop", "TEE-M").await;
    assert!(!failed.parked && failed.attempts == 1, "{failed:?}");
    store.outbox_record(vec![ack(&newer, far)]).await.unwrap();
    let acked = must_row(&store, "shop", "TEE-M").await;
    assert!(!acked.parked && acked.dirty_since.is_none(), "{acked:?}");
    assert_eq!(store.dead_letters(0, 10).await.unwrap().len(), 1);
}

/// Case 5d: Latency runs from the oldest cause the channel has not
/// acknowledged: a newer event does not move it; an acknowledgement of an
/// older generation moves it to the next generation's cause.
async fn latency_start_is_the_oldest_unacknowledged_cause(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M"]).await;
    let listed = must_row(&store, "shop", "TEE-M").await;
    store
        .outbox_record(vec![ack(&listed, ms(Utc::now()))])
        .await
        .unwrap();
    assert_eq!(must_row(&store, "shop", "TEE-M").await.unacked_since, None);
    let (_, before, after) = submit_timed(
        &store,
        vec![json!({"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 5})],
    )
    .await;
    let first = must_row(&store, "shop", "TEE-M").await;
    let start = first.unacked_since.expect("a lagging row has a start");
    assert_between(start, before, after, "unacked_since");
    receipt(&store, "r2", "TEE-M", "AMS", 1).await;
    let second = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(second.unacked_since, Some(start));
    assert!(second.caused_at >= start);
    assert_eq!(second.latency_start(), start);
    // The first generation acknowledged: the second's cause is the start.
    store
        .outbox_record(vec![ack(&first, ms(Utc::now()))])
        .await
        .unwrap();
    let after_ack = must_row(&store, "shop", "TEE-M").await;
    assert_eq!(after_ack.unacked_since, Some(second.caused_at));
    store
        .outbox_record(vec![ack(&after_ack, ms(Utc::now()))])
        .await
        .unwrap();
    assert_eq!(must_row(&store, "shop", "TEE-M").await.unacked_since, None);
}

/// Case 5e: In-flight marks keep rounds off a row; a new lease holder makes
/// due what another left in flight. Leases: one holder at a time, renewed
/// by its holder, taken over once run out; the poll cursor moves only for
/// the holder. The oldest unsent age per channel.
async fn in_flight_and_leases(store: Shared) {
    setup(&store).await;
    list(&store, "shop", &["TEE-M", "TEE-L"]).await;
    receipt(&store, "r1", "TEE-M", "AMS", 5).await;
    let now = ms(Utc::now());
    store
        .outbox_record(vec![OutboxUpdate::InFlight {
            channel: ch("shop"),
            sku: sku("TEE-M"),
            holder: "a".into(),
            until: now + Duration::minutes(20),
        }])
        .await
        .unwrap();
    assert_eq!(due_skus(&store, "shop", now).await, ["TEE-L"]);
    assert_eq!(
        store
            .outbox_release_in_flight(&ch("shop"), "a")
            .await
            .unwrap(),
        0
    );
    assert_eq!(due_skus(&store, "shop", now).await, ["TEE-L"]);
    assert_eq!(
        store
            .outbox_release_in_flight(&ch("shop"), "b")
            .await
            .unwrap(),
        1
    );
    assert_eq!(due_skus(&store, "shop", now).await, ["TEE-L", "TEE-M"]);

    let oldest = store.outbox_oldest_unsent().await.unwrap();
    let shop = oldest
        .iter()
        .find(|(c, _)| *c == ch("shop"))
        .expect("shop lags");
    let rows = all_rows(&store).await;
    let min = rows
        .iter()
        .filter(|r| r.channel == ch("shop"))
        .filter_map(|r| r.dirty_since)
        .min();
    assert_eq!(Some(shop.1), min);

    let shop = ch("shop");
    let ttl = Duration::seconds(6);
    assert!(store
        .channel_lease(&shop, "a", now, now + ttl)
        .await
        .unwrap());
    assert!(!store
        .channel_lease(&shop, "b", now, now + ttl)
        .await
        .unwrap());
    assert!(store
        .channel_lease(&shop, "a", now + Duration::seconds(2), now + ttl * 2)
        .await
        .unwrap());
    store
        .set_poll_cursor(&shop, "b", Some("from-b"))
        .await
        .unwrap();
    assert_eq!(store.poll_cursor(&shop).await.unwrap(), None);
    store.set_poll_cursor(&shop, "a", Some("c1")).await.unwrap();
    assert_eq!(
        store.poll_cursor(&shop).await.unwrap().as_deref(),
        Some("c1")
    );
    // Not yet run out for b; then run out.
    let later = now + Duration::seconds(10);
    assert!(!store
        .channel_lease(&shop, "b", later, later + ttl)
        .await
        .unwrap());
    let expired = now + ttl * 2 + Duration::seconds(1);
    assert!(store
        .channel_lease(&shop, "b", expired, expired + ttl)
        .await
        .unwrap());
    assert!(!store
        .channel_lease(&shop, "a", expired, expired + ttl)
        .await
        .unwrap());
    // The cursor stays for the new holder; a released lease is free at once.
    assert_eq!(
        store.poll_cursor(&shop).await.unwrap().as_deref(),
        Some("c1")
    );
    store.channel_lease_release(&shop, "b").await.unwrap();
    assert!(store
        .channel_lease(&shop, "a", expired, expired + ttl)
        .await
        .unwrap());
}

/// One process (SQLite) takes no lease: its poll cursor is still kept, and
/// a restarted process — another holder name — reads it and moves it on.
async fn poll_cursor_without_a_lease(store: Shared) {
    let shop = ch("shop");
    assert_eq!(store.poll_cursor(&shop).await.unwrap(), None);
    store
        .set_poll_cursor(&shop, "first-process", Some("2026-11-27T20:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        store.poll_cursor(&shop).await.unwrap().as_deref(),
        Some("2026-11-27T20:00:00Z")
    );
    store
        .set_poll_cursor(&shop, "restarted", Some("2026-11-27T20:05:00Z"))
        .await
        .unwrap();
    assert_eq!(
        store.poll_cursor(&shop).await.unwrap().as_deref(),
        Some("2026-11-27T20:05:00Z")
    );
}

on_both_stores!(
    receipt_writes_listing_state_in_the_same_commit,
    one_request_writes_each_listing_once,
    replayed_events_move_listings,
    refresh_covers_every_page,
    coalesces_to_the_latest_state,
    ack_cleans_and_a_new_change_dirties,
    failed_and_deferred_wait_their_turn,
    due_rows_oldest_first,
    dead_letters_park_retry_and_discard,
    dead_letters_of_one_listing,
    transient_dead_letters_revive,
    kits_and_components_move_together,
    rules_versions_recompute_every_listing,
    channel_quantity_moves,
    outbox_pages_and_filters,
    protective_updates_first,
    channel_order_moves_the_count_in_its_commit,
    parked_listing_sends_a_newer_state,
    latency_start_is_the_oldest_unacknowledged_cause,
    in_flight_and_leases,
    poll_cursor_without_a_lease,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stockd.db").display());
    survives_restart(move || {
        let url = url.clone();
        Box::pin(async move { stockd_store::open(&url).await.unwrap() })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_restart() {
    let Some(url) = stockd_store::test_support::fresh_postgres_url("outbox_restart").await else {
        return;
    };
    survives_restart(move || {
        let url = url.clone();
        Box::pin(async move { stockd_store::open(&url).await.unwrap() })
    })
    .await;
}
