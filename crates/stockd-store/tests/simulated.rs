//! A store under a simulated clock (`open_simulated`), as `stockd simulate`
//! uses it: the caller's thread waits for each write's answer.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use stockd_core::{Event, EventInput, Location, LocationId, Sku, Variant};
use stockd_store::{submission, Clock};

fn receipt(key: &str) -> stockd_core::Submission {
    let input: EventInput = serde_json::from_value(json!({
        "key": key, "type": "receipt", "sku": "TEE", "location": "AMS", "qty": 1
    }))
    .expect("event input");
    submission(Event::validate(&input).expect("valid event"))
}

/// One task writing a thousand times without yielding to its runtime (as an
/// order poll applies every change it read): more than tokio's cooperative
/// budget, whose exhaustion defers a wake-up until the task yields. Each
/// write must still be answered.
#[test]
fn a_task_that_writes_many_times_in_a_row_is_answered_every_time() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("simulated.db");
    let path = path.to_string_lossy().into_owned();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let clock: Clock = Arc::new(chrono::Utc::now);
            let store = stockd_store::open_simulated(&path, clock).expect("store");
            store
                .upsert_location(Location {
                    id: LocationId::parse("AMS").expect("id"),
                    name: "AMS".into(),
                    sellable: true,
                    priority: 1,
                })
                .await
                .expect("location");
            store
                .upsert_variants(vec![Variant {
                    sku: Sku::parse("TEE").expect("sku"),
                    title: None,
                    product_id: None,
                    gtin: None,
                }])
                .await
                .expect("variant");
            let writer = store.clone();
            let task = tokio::spawn(async move {
                // One unit of budget spent elsewhere first (an HTTP read, a
                // channel), so that the budget runs out on an answer's wait
                // rather than on a send, which would yield.
                tokio::task::consume_budget().await;
                for i in 0..1_000 {
                    writer
                        .submit(vec![receipt(&format!("r-{i}"))])
                        .await
                        .expect("answered")
                        .expect("accepted");
                }
            });
            task.await.expect("task");
            store.close().await;
        });
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(120)).is_ok(),
        "a write was never answered"
    );
}
