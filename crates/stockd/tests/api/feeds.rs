//! Supplier feeds: a mapped CSV, bad rows reported while good rows apply, a
//! truncated file refused whole, a re-import that changes nothing (on both
//! stores), and the feeds API with a scheduled file source.

use crate::helpers::TestApp;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stockd::inbound::feeds::{self, FeedSettings, FileFeed};
use stockd_store::inbound::FeedRunStatus;
use stockd_store::Store;

fn feed(toml_text: &str) -> FeedSettings {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        feeds: Vec<FileFeed>,
    }
    let wrapper: Wrapper = toml::from_str(toml_text).expect("feed toml");
    feeds::resolve(wrapper.feeds).expect("valid feed").remove(0)
}

const STOCK_FEED: &str = r#"
[[feeds]]
id = "acme"
supplier = "ACME Ltd"
format = "csv"
mode = "supplier_stock"
location = "SUP-ACME"
delimiter = ";"
max_sku_drop = 0.3
[feeds.columns]
sku = "Item No"
qty = "Available"
[feeds.sku_map]
"AC-1" = "A"
"AC-2" = "B"
"AC-3" = "C"
"AC-4" = "D"
"#;

async fn catalog(store: &dyn Store, skus: &[&str]) {
    let location = stockd::input::parse_location(
        "SUP-ACME",
        &json!({"name": "ACME dropship", "sellable": true}),
    )
    .expect("location");
    store.upsert_location(location).await.expect("location");
    let variants = skus
        .iter()
        .map(|sku| stockd::input::parse_variant_item(&json!({ "sku": sku })).expect("variant"))
        .collect();
    store.upsert_variants(variants).await.expect("variants");
}

async fn on_hand(store: &dyn Store, sku: &str) -> i64 {
    let sku = stockd_core::Sku::parse(sku).unwrap();
    store.stock(&sku).await.unwrap().expect("known sku").on_hand
}

async fn ledger_len(store: &dyn Store) -> usize {
    store
        .ledger(&stockd_store::LedgerQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

async fn supplier_stock_feed(store: Arc<dyn Store>) {
    let store = &*store;
    let feed = feed(STOCK_FEED);
    catalog(store, &["A", "B", "C", "D"]).await;
    let file =
        "Item No;Available;Cost\nAC-1;12;3.10\nAC-2;  7 ;1\nAC-9;5;1\nAC-3;lots;1\nAC-4;0;2\n";
    let run = feeds::run_feed(store, &feed, "stock.csv", file.as_bytes(), None)
        .await
        .expect("run");
    assert_eq!(run.status, FeedRunStatus::Applied, "{run:?}");
    assert_eq!(
        (
            run.rows_total,
            run.rows_applied,
            run.rows_duplicate,
            run.rows_bad,
            run.skus
        ),
        (5, 3, 0, 2, 3)
    );
    assert_eq!(
        run.problems,
        json!([
            {"line": 4, "column": "Item No", "reason": "no variant is mapped to supplier sku \"AC-9\""},
            {"line": 5, "column": "Available", "reason": "\"lots\" is not a whole number of units"},
        ])
    );
    assert_eq!(on_hand(store, "A").await, 12);
    assert_eq!(on_hand(store, "B").await, 7);
    assert_eq!(on_hand(store, "D").await, 0);

    // The same file again changes nothing.
    let ledger_before = ledger_len(store).await;
    let again = feeds::run_feed(store, &feed, "stock.csv", file.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!((again.rows_applied, again.rows_duplicate), (0, 3));
    assert_eq!(ledger_len(store).await, ledger_before);
    assert_eq!(on_hand(store, "A").await, 12);

    // A truncated upload (one SKU of three) is refused whole.
    let truncated = "Item No;Available\nAC-1;0\n";
    let refused = feeds::run_feed(store, &feed, "stock.csv", truncated.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(refused.status, FeedRunStatus::Refused);
    let error = refused.error.clone().unwrap();
    assert!(
        error.starts_with("feed_truncated: 1 SKUs against 3"),
        "{error}"
    );
    assert_eq!(refused.rows_applied, 0);
    assert_eq!(on_hand(store, "A").await, 12, "nothing applied");

    // A new file with a change applies it.
    let next = "Item No;Available\nAC-1;10\nAC-2;7\nAC-4;1\n";
    let run = feeds::run_feed(store, &feed, "stock.csv", next.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!((run.status, run.rows_applied), (FeedRunStatus::Applied, 3));
    assert_eq!(on_hand(store, "A").await, 10);
    assert_eq!(on_hand(store, "D").await, 1);

    let runs = store.feed_runs("acme", 10).await.unwrap();
    let statuses: Vec<FeedRunStatus> = runs.iter().map(|r| r.run.status).collect();
    assert_eq!(
        statuses,
        vec![
            FeedRunStatus::Applied,
            FeedRunStatus::Refused,
            FeedRunStatus::Applied,
            FeedRunStatus::Applied
        ]
    );
}

#[tokio::test]
async fn supplier_stock_feed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = stockd_store::open(&crate::helpers::sqlite_url(&dir))
        .await
        .unwrap();
    supplier_stock_feed(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn supplier_stock_feed_on_postgres() {
    let Some(url) = stockd_store::test_support::fresh_postgres_url("feed_stock").await else {
        return;
    };
    let store = stockd_store::open(&url).await.unwrap();
    supplier_stock_feed(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn asn_feed_from_json_becomes_inbound_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = stockd_store::open(&crate::helpers::sqlite_url(&dir))
        .await
        .unwrap();
    catalog(&*store, &["A", "B"]).await;
    let feed = feed(
        r#"
        [[feeds]]
        id = "acme-asn"
        supplier = "ACME Ltd"
        format = "json"
        mode = "inbound"
        location = "SUP-ACME"
        [feeds.columns]
        sku = "sku"
        qty = "quantity"
        po = "asn"
        eta = "delivery"
        confirmed = "firm"
        "#,
    );
    let file = json!([
        {"sku": "A", "quantity": "40", "asn": "ASN-1", "delivery": "2027-01-15", "firm": "yes"},
        {"sku": "B", "quantity": 5, "asn": "ASN-1", "delivery": "15/01/2027"},
        {"sku": "B", "quantity": 5, "asn": "ASN-2", "firm": "no"},
    ])
    .to_string();
    let run = feeds::run_feed(&*store, &feed, "asn.json", file.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!((run.rows_applied, run.rows_bad), (2, 1), "{run:?}");
    assert_eq!(run.problems[0]["column"], "delivery");
    assert_eq!(run.problems[0]["line"], 2);
    let view = store
        .stock(&stockd_core::Sku::parse("A").unwrap())
        .await
        .unwrap()
        .unwrap();
    let inbound = serde_json::to_value(&view.inbound).unwrap();
    assert_eq!(inbound[0]["po_id"], "ASN-1");
    assert_eq!(inbound[0]["qty"], 40);
    assert_eq!(inbound[0]["eta"], "2027-01-15");
    store.close().await;
}

#[tokio::test]
async fn scheduled_feed_runs_are_listed_by_the_api() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(
        files.path().join("acme-old.csv"),
        "Item No;Available\nAC-1;1\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        files.path().join("acme-new.csv"),
        "Item No;Available\nAC-1;9\nAC-2;x\n",
    )
    .unwrap();
    let mut settings = feed(STOCK_FEED);
    settings.source = Some(files.path().join("acme-*.csv").display().to_string());
    settings.every_secs = Some(3600);
    let app = TestApp::sqlite_with(|c| c.inbound.feeds = vec![settings]).await;
    let runs = loop_until(&app, "/v1/feeds/acme/runs").await;
    let run = &runs[0];
    assert_eq!(run["status"], "applied");
    assert!(
        run["source"].as_str().unwrap().ends_with("acme-new.csv"),
        "{run}"
    );
    assert_eq!(run["rows_bad"], 1);
    // The variants did not exist: the applied row waits in quarantine.
    assert_eq!(run["rows_applied"], 1);
    let list = app.get("/v1/feeds").await.expect(200).body;
    assert_eq!(list["items"][0]["feed"]["id"], "acme");
    assert_eq!(list["items"][0]["feed"]["mode"], "supplier_stock");
    assert_eq!(list["items"][0]["last_run"]["id"], run["id"]);
    app.get("/v1/feeds/nope/runs")
        .await
        .expect_error(404, "unknown_feed");
    app.stop().await;
}

async fn loop_until(app: &TestApp, path: &str) -> Vec<Value> {
    for _ in 0..200 {
        let body = app.get(path).await.expect(200).body;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no feed run listed at {path}");
}

async fn rejected_messages_are_kept_once_per_stream_sequence(store: Arc<dyn Store>) {
    use stockd_store::inbound::RejectedMessage;
    let message = |seq: u64, body: &str| RejectedMessage {
        source: "nats".into(),
        stream: "ERP".into(),
        stream_seq: seq,
        subject: "erp.stock.wms".into(),
        code: "malformed_json".into(),
        reason: "not JSON".into(),
        body: body.into(),
        received_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
    };
    let first = store.record_rejected(message(7, "{x")).await.unwrap();
    // A redelivery of the same message keeps the first record.
    let again = store.record_rejected(message(7, "{x")).await.unwrap();
    assert_eq!(first, again);
    let second = store.record_rejected(message(9, "[")).await.unwrap();
    let rows = store.rejected(0, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].message, message(7, "{x"));
    assert_eq!(store.rejected(first, 10).await.unwrap()[0].id, second);
    assert!(store.discard_rejected(first).await.unwrap());
    assert!(!store.discard_rejected(first).await.unwrap());
    assert_eq!(store.rejected(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn rejected_messages_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = stockd_store::open(&crate::helpers::sqlite_url(&dir))
        .await
        .unwrap();
    rejected_messages_are_kept_once_per_stream_sequence(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn rejected_messages_on_postgres() {
    let Some(url) = stockd_store::test_support::fresh_postgres_url("rejected").await else {
        return;
    };
    let store = stockd_store::open(&url).await.unwrap();
    rejected_messages_are_kept_once_per_stream_sequence(store.clone()).await;
    store.close().await;
}

/// What the test supplier's HTTP server answers: 503 until a file is set.
#[derive(Default)]
struct SupplierFile {
    body: std::sync::Mutex<Option<String>>,
    requests: std::sync::atomic::AtomicU64,
}

/// A supplier's HTTP server on 127.0.0.1:0 serving `/stock.csv`.
async fn supplier_server(file: Arc<SupplierFile>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/stock.csv",
        axum::routing::get(move || {
            let file = file.clone();
            async move {
                file.requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match file.body.lock().unwrap().clone() {
                    Some(body) => (StatusCode::OK, body).into_response(),
                    None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("supplier server");
    });
    (format!("http://{addr}/stock.csv"), task)
}

/// Waits until the feed has `count` runs and returns them, newest first.
async fn runs_at_least(app: &TestApp, path: &str, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let body = app.get(path).await.expect(200).body;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= count {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} feed runs listed at {path}");
}

/// A feed fetched over http on a schedule: a failing fetch records no run,
/// the file applies, the same content fetched again changes nothing, and a
/// truncated response is refused whole.
#[tokio::test]
async fn http_feed_is_fetched_on_schedule_and_guarded() {
    let file = Arc::new(SupplierFile::default());
    let (url, server) = supplier_server(file.clone()).await;
    let mut settings = feed(STOCK_FEED);
    settings.source = Some(url);
    settings.every_secs = Some(1);
    let app = TestApp::sqlite_with(|c| c.inbound.feeds = vec![settings]).await;
    app.put(
        "/v1/locations/SUP-ACME",
        json!({"name": "ACME dropship", "sellable": true}),
    )
    .await
    .expect(200);
    app.variants(&["A", "B", "C", "D"]).await;
    let path = "/v1/feeds/acme/runs";

    // The supplier answers 503 for now: fetched, but no run is recorded.
    for _ in 0..100 {
        if file.requests.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(file.requests.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let none = app.get(path).await.expect(200).body;
    assert_eq!(none["items"], json!([]), "a failed fetch is not a run");

    *file.body.lock().unwrap() =
        Some("Item No;Available\nAC-1;12\nAC-2;7\nAC-3;3\nAC-4;0\n".into());
    let runs = runs_at_least(&app, path, 1).await;
    let first = runs.last().unwrap();
    assert_eq!(first["status"], "applied", "{first}");
    assert_eq!(
        (first["rows_applied"].as_u64(), first["rows_bad"].as_u64()),
        (Some(4), Some(0))
    );
    assert!(
        first["source"].as_str().unwrap().starts_with("http://"),
        "{first}"
    );
    assert_eq!(app.stock("A").await["on_hand"], 12);
    let ledger = app.get("/v1/ledger?limit=1000").await.expect(200).body;
    let entries = ledger["items"].as_array().unwrap().len();

    // The next scheduled fetch gets the same content: every row a duplicate.
    let runs = runs_at_least(&app, path, 2).await;
    let again = &runs[runs.len() - 2];
    assert_eq!(again["status"], "applied", "{again}");
    assert_eq!(
        (
            again["rows_applied"].as_u64(),
            again["rows_duplicate"].as_u64()
        ),
        (Some(0), Some(4))
    );
    let ledger = app.get("/v1/ledger?limit=1000").await.expect(200).body;
    assert_eq!(ledger["items"].as_array().unwrap().len(), entries);

    // A truncated response (one SKU of four) is refused; nothing changes.
    *file.body.lock().unwrap() = Some("Item No;Available\nAC-1;0\n".into());
    let before = runs_at_least(&app, path, 1).await.len();
    let mut refused = None;
    for _ in 0..100 {
        let runs = runs_at_least(&app, path, before + 1).await;
        // A run that fetched before the switch may still have applied.
        if runs[0]["status"] != "applied" {
            refused = Some(runs[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = refused.expect("a run after the truncated response");
    assert_eq!(refused["status"], "refused", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("feed_truncated: 1 SKUs against 4"),
        "{refused}"
    );
    assert_eq!(refused["rows_applied"], 0);
    assert_eq!(app.stock("A").await["on_hand"], 12, "nothing applied");
    app.stop().await;
    server.abort();
}
