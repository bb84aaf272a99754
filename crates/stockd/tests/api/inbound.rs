//! Inbound over NATS JetStream, against the real server named by
//! `STOCKD_TEST_NATS_URL` (default `nats://127.0.0.1:4222`; skipped loudly
//! when unreachable, unless STOCKD_REQUIRE_SERVICES=1). Each test uses a
//! stream and subjects of its own and deletes the stream at the end.

use crate::helpers::{config, receipt, sqlite_url, TestApp};
use async_nats::jetstream;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use stockd::inbound::{NatsAuth, NatsInboundSettings};
use stockd_store::test_support::services_required;

/// A connection to the test NATS server, or `None` after a loud skip.
async fn nats(test_name: &str) -> Option<async_nats::Client> {
    let url = std::env::var("STOCKD_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
    let connected = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(Some(1))
            .connect(url.as_str()),
    )
    .await;
    match connected {
        Ok(Ok(client)) => Some(client),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            if services_required() {
                panic!("NATS at {url} is unreachable and STOCKD_REQUIRE_SERVICES=1: {why}");
            }
            eprintln!("SKIPPED {test_name}: NATS at {url} is unreachable ({why}); set STOCKD_TEST_NATS_URL or start nats-server -js");
            None
        }
    }
}

/// Settings with a stream and subjects no other test (or run) uses.
fn settings(test_name: &str, ack_wait: Duration) -> NatsInboundSettings {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let unique = format!(
        "{}_{}_{}_{}",
        std::process::id(),
        n,
        test_name,
        chrono::Utc::now().timestamp_millis()
    );
    NatsInboundSettings {
        url: std::env::var("STOCKD_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string()),
        auth: NatsAuth::None,
        stream: format!("STOCKD_TEST_{unique}"),
        subjects: vec![format!("stockdtest.{unique}.>")],
        durable: "stockd".into(),
        batch: 64,
        ack_wait,
    }
}

fn subject(settings: &NatsInboundSettings, tail: &str) -> String {
    settings.subjects[0].replace('>', tail)
}

async fn publish(js: &jetstream::Context, subject: &str, body: impl Into<Vec<u8>>) {
    js.publish(subject.to_string(), body.into().into())
        .await
        .expect("publish")
        .await
        .expect("stored by the stream");
}

/// Waits until `check` holds (polling), or fails after 15 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn on_hand(app: &TestApp, sku: &str) -> i64 {
    app.stock(sku).await["on_hand"].as_i64().expect("on_hand")
}

async fn consumer_info(
    js: &jetstream::Context,
    settings: &NatsInboundSettings,
) -> jetstream::consumer::Info {
    let stream = js.get_stream(&settings.stream).await.expect("stream");
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_consumer(&settings.durable)
        .await
        .expect("consumer");
    consumer.info().await.expect("consumer info").clone()
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn catalog(app: &TestApp, skus: &[&str]) {
    app.location("AMS", true, 0).await;
    app.variants(skus).await;
}

#[tokio::test]
async fn published_events_are_applied_then_acknowledged() {
    let Some(client) = nats("published_events_are_applied").await else {
        return;
    };
    let js = jetstream::new(client);
    let s = settings("applied", Duration::from_secs(30));
    stockd::inbound::nats::bind(&js, &s)
        .await
        .expect("stream and consumer");
    let server_settings = s.clone();
    let app = TestApp::sqlite_with(|c| c.inbound.nats = Some(server_settings)).await;
    catalog(&app, &["A", "B"]).await;
    publish(
        &js,
        &subject(&s, "wms1"),
        receipt("n1", "A", "AMS", 5).to_string(),
    )
    .await;
    publish(
        &js,
        &subject(&s, "wms1"),
        json!([receipt("n2", "A", "AMS", 2), receipt("n3", "B", "AMS", 7)]).to_string(),
    )
    .await;
    eventually("both messages applied", || async {
        on_hand(&app, "A").await == 7 && on_hand(&app, "B").await == 7
    })
    .await;
    eventually("both messages acknowledged", || async {
        let info = consumer_info(&js, &s).await;
        info.num_ack_pending == 0 && info.num_pending == 0 && info.ack_floor.stream_sequence == 2
    })
    .await;
    let metrics = app.get("/metrics").await.expect(200).text;
    assert_eq!(
        metric(
            &metrics,
            r#"stockd_inbound_messages_total{outcome="received"}"#
        ),
        Some(2),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"stockd_inbound_messages_total{outcome="applied"}"#
        ),
        Some(2)
    );
    assert_eq!(
        metric(&metrics, "stockd_inbound_events_applied_total"),
        Some(3)
    );
    assert_eq!(
        metric(&metrics, "stockd_inbound_ack_latency_seconds_count"),
        Some(2)
    );
    app.stop().await;
    js.delete_stream(&s.stream).await.expect("delete stream");
}

#[tokio::test]
async fn poison_messages_are_kept_as_rejected_and_do_not_block() {
    let Some(client) = nats("poison_messages").await else {
        return;
    };
    let js = jetstream::new(client);
    let s = settings("poison", Duration::from_secs(30));
    stockd::inbound::nats::bind(&js, &s)
        .await
        .expect("stream and consumer");
    let server_settings = s.clone();
    let app = TestApp::sqlite_with(|c| c.inbound.nats = Some(server_settings)).await;
    catalog(&app, &["A"]).await;
    let subj = subject(&s, "erp");
    publish(&js, &subj, "{not json").await;
    publish(
        &js,
        &subj,
        json!({"type": "receipt", "sku": "A"}).to_string(),
    )
    .await;
    publish(&js, &subj, receipt("k1", "A", "AMS", 4).to_string()).await;
    // The same key with another payload.
    publish(&js, &subj, receipt("k1", "A", "AMS", 40).to_string()).await;
    publish(&js, &subj, receipt("k2", "A", "AMS", 1).to_string()).await;
    eventually("the good messages applied", || async {
        on_hand(&app, "A").await == 5
    })
    .await;
    eventually("every message settled", || async {
        let info = consumer_info(&js, &s).await;
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    let page = app.get("/v1/inbound/rejected").await.expect(200).body;
    let items = page["items"].as_array().expect("items");
    let seen: Vec<(u64, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["stream_seq"].as_u64().unwrap(),
                i["code"].as_str().unwrap(),
                i["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "malformed_json", subj.as_str()),
            (2, "invalid_event", subj.as_str()),
            (4, "idempotency_key_reused", subj.as_str()),
        ]
    );
    assert_eq!(items[0]["body"], "{not json");
    assert_eq!(items[0]["stream"], Value::String(s.stream.clone()));
    let reason = items[1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("location"),
        "names the missing field: {reason}"
    );
    // The applied event is there once; the refused payload was not applied.
    let ledger = app.get("/v1/ledger?sku=A").await.expect(200).body;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2);

    let id = items[0]["id"].as_i64().unwrap();
    app.delete(&format!("/v1/inbound/rejected/{id}"))
        .await
        .expect(204);
    app.delete(&format!("/v1/inbound/rejected/{id}"))
        .await
        .expect_error(404, "unknown_rejected_message");
    let page = app.get("/v1/inbound/rejected").await.expect(200).body;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let metrics = app.get("/metrics").await.expect(200).text;
    assert_eq!(
        metric(
            &metrics,
            r#"stockd_inbound_messages_total{outcome="rejected"}"#
        ),
        Some(3)
    );
    app.stop().await;
    js.delete_stream(&s.stream).await.expect("delete stream");
}

/// The closest repeatable stand-in for a kill -9 between commit and ack: a
/// consumer on the shared durable applies (commits) a message through the
/// same code stockd runs and is dropped without acknowledging it. After the
/// ack wait the server redelivers it to stockd, which recognises every event
/// as a duplicate and acknowledges it; nothing is applied twice.
#[tokio::test]
async fn a_commit_without_ack_is_redelivered_and_applied_once() {
    let Some(client) = nats("commit_without_ack").await else {
        return;
    };
    let js = jetstream::new(client.clone());
    let s = settings("crash", Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = sqlite_url(&dir);

    // First instance: prepare the catalog, take the message, commit, die.
    {
        let app = TestApp::start(config(url.clone()), tempfile::tempdir().unwrap()).await;
        catalog(&app, &["A"]).await;
        app.stop().await;
        let store = stockd_store::open(&url).await.expect("store");
        let consumer = stockd::inbound::nats::bind(&js, &s).await.expect("bind");
        publish(
            &js,
            &subject(&s, "wms"),
            json!([receipt("c1", "A", "AMS", 3), receipt("c2", "A", "AMS", 4)]).to_string(),
        )
        .await;
        use futures_util::StreamExt;
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .messages()
            .await
            .expect("fetch");
        let message = batch.next().await.expect("a message").expect("message");
        let verdicts = stockd::inbound::nats::apply_messages(&*store, &[message]).await;
        assert!(
            matches!(verdicts[..], [stockd::inbound::nats::Verdict::Committed(_)]),
            "{verdicts:?}"
        );
        store.close().await;
        // Dropped unacknowledged.
    }
    assert_eq!(consumer_info(&js, &s).await.num_ack_pending, 1);

    let mut cfg = config(url);
    cfg.inbound.nats = Some(s.clone());
    let app = TestApp::start(cfg, dir).await;
    eventually("the redelivery acknowledged", || async {
        let info = consumer_info(&js, &s).await;
        info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 1
    })
    .await;
    assert_eq!(on_hand(&app, "A").await, 7, "applied once");
    let ledger = app.get("/v1/ledger?sku=A").await.expect(200).body;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2);
    let metrics = app.get("/metrics").await.expect(200).text;
    assert_eq!(
        metric(
            &metrics,
            r#"stockd_inbound_messages_total{outcome="duplicate"}"#
        ),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"stockd_inbound_messages_total{outcome="applied"}"#
        ),
        Some(0)
    );
    app.stop().await;
    js.delete_stream(&s.stream).await.expect("delete stream");
}

/// Two instances on one PostgreSQL database share the durable consumer:
/// every message is applied exactly once.
#[tokio::test]
async fn two_instances_on_one_consumer_apply_every_message_once() {
    let Some(client) = nats("two_instances").await else {
        return;
    };
    let Some(url) = stockd_store::test_support::fresh_postgres_url("inbound_two").await else {
        return;
    };
    let js = jetstream::new(client);
    let s = settings("two", Duration::from_secs(30));
    let start = |s: NatsInboundSettings| {
        let mut cfg = config(url.clone());
        cfg.inbound.nats = Some(s);
        TestApp::start(cfg, tempfile::tempdir().unwrap())
    };
    stockd::inbound::nats::bind(&js, &s)
        .await
        .expect("stream and consumer");
    let first = start(s.clone()).await;
    let second = start(s.clone()).await;
    catalog(&first, &["A", "B", "C", "D"]).await;
    const MESSAGES: u64 = 400;
    let skus = ["A", "B", "C", "D"];
    let publishing = (0..MESSAGES).map(|i| {
        let js = js.clone();
        let subj = subject(&s, "wms");
        async move {
            let sku = skus[(i % 4) as usize];
            js.publish(
                subj,
                receipt(&format!("m{i}"), sku, "AMS", 1).to_string().into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
        }
    });
    futures_util::future::join_all(publishing).await;
    eventually("every message applied", || async {
        let mut total = 0;
        for sku in skus {
            total += on_hand(&first, sku).await;
        }
        total == MESSAGES as i64
    })
    .await;
    eventually("every message acknowledged", || async {
        let info = consumer_info(&js, &s).await;
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    let mut applied = 0;
    let mut received = Vec::new();
    for app in [&first, &second] {
        let metrics = app.get("/metrics").await.expect(200).text;
        applied += metric(
            &metrics,
            r#"stockd_inbound_messages_total{outcome="applied"}"#,
        )
        .unwrap();
        received.push(
            metric(
                &metrics,
                r#"stockd_inbound_messages_total{outcome="received"}"#,
            )
            .unwrap(),
        );
    }
    assert_eq!(applied, MESSAGES, "each message applied by one instance");
    assert_eq!(
        received.iter().sum::<u64>(),
        MESSAGES,
        "no redelivery: {received:?}"
    );
    for sku in skus {
        assert_eq!(on_hand(&second, sku).await, (MESSAGES / 4) as i64);
    }
    first.stop().await;
    second.stop().await;
    js.delete_stream(&s.stream).await.expect("delete stream");
}

/// Stock changes published out: one message per committed change of a SKU
/// (changes made one at a time), in generation order per SKU, with the
/// quantities of that change; a repeated publish is dropped by the stream.
#[tokio::test]
async fn stock_changes_are_published_once_per_change_in_order() {
    let Some(client) = nats("stock_published").await else {
        return;
    };
    let js = jetstream::new(client);
    let unique = settings("out", Duration::from_secs(30));
    let outbound = stockd::outbound::publish::NatsOutboundSettings {
        url: unique.url.clone(),
        auth: NatsAuth::None,
        subject_prefix: unique.subjects[0]
            .trim_end_matches(".>")
            .replace("stockdtest", "stockdout"),
        stream: format!("{}_OUT", unique.stream),
    };
    let server_outbound = outbound.clone();
    let app = TestApp::sqlite_with(|c| c.inbound.outbound_nats = Some(server_outbound)).await;
    catalog(&app, &["A", "B.1"]).await;
    let stream_messages = || async {
        match js.get_stream(&outbound.stream).await {
            Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    };
    let mut expected = 0;
    for i in 1..=4 {
        for sku in ["A", "B.1"] {
            app.events(receipt(&format!("{sku}-{i}"), sku, "AMS", i))
                .await;
            expected += 1;
            eventually("the change published", || async {
                stream_messages().await == expected
            })
            .await;
        }
    }
    // An order touching A publishes A once more.
    app.events(
        json!({"key": "o1", "type": "order", "channel": "web", "order_id": "O1",
        "lines": [{"line_id": "1", "sku": "A", "qty": 2}]}),
    )
    .await;
    expected += 1;
    eventually("the order published", || async {
        stream_messages().await == expected
    })
    .await;

    // Read the stream back.
    let stream = js.get_stream(&outbound.stream).await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    use futures_util::StreamExt;
    let mut batch = consumer.fetch().max_messages(100).messages().await.unwrap();
    let mut seen: Vec<(String, stockd::outbound::publish::StockMessage)> = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        let body: stockd::outbound::publish::StockMessage =
            serde_json::from_slice(&m.payload).unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .unwrap()
            .to_string();
        assert_eq!(id, format!("{}:{}", body.sku, body.gen));
        seen.push((m.subject.to_string(), body));
    }
    assert_eq!(seen.len(), expected as usize);
    let of = |sku: &str| -> Vec<(u64, i64, i64)> {
        seen.iter()
            .filter(|(_, m)| m.sku == sku)
            .map(|(_, m)| (m.gen, m.on_hand, m.reserved))
            .collect()
    };
    assert_eq!(
        of("A"),
        vec![(1, 1, 0), (2, 3, 0), (3, 6, 0), (4, 10, 0), (5, 10, 2)]
    );
    assert_eq!(of("B.1"), vec![(1, 1, 0), (2, 3, 0), (3, 6, 0), (4, 10, 0)]);
    assert!(seen.iter().all(|(_, m)| m.version == 1));
    assert!(
        seen.iter()
            .any(|(subject, m)| m.sku == "B.1" && subject.ends_with(".B%2E1")),
        "the dot of the SKU is escaped in the subject"
    );

    // A repeat of a published change (a crash before it was recorded) is
    // dropped by the stream's deduplication.
    let (subject, last) = seen.last().unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{}:{}", last.sku, last.gen).as_str());
    let ack = js
        .publish_with_headers(
            subject.clone(),
            headers,
            serde_json::to_vec(last).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
    assert_eq!(stream_messages().await, expected);
    app.stop().await;
    js.delete_stream(&outbound.stream)
        .await
        .expect("delete stream");
}

/// `stockd demo --inbound nats`: the warehouse traffic goes over JetStream
/// and every message is consumed and acknowledged.
#[tokio::test]
async fn the_demo_sends_warehouse_traffic_over_nats() {
    let Some(client) = nats("demo_over_nats").await else {
        return;
    };
    let js = jetstream::new(client);
    let url = std::env::var("STOCKD_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = stockd::demo::DemoOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        duration: Some(Duration::from_secs(4)),
        variants: 60,
        kits: 5,
        orders_per_second: 5.0,
        warehouse_per_second: 5.0,
        report: None,
        inbound_nats: Some(url),
    };
    let report = stockd::demo::run(options, std::future::pending())
        .await
        .expect("the demo runs");
    assert!(report.drained, "{report:?}");
    assert_eq!(report.drift_listings, 0, "{report:?}");
    let stream_name = format!("STOCKD_DEMO_{}", std::process::id());
    let mut stream = js
        .get_stream(&stream_name)
        .await
        .expect("the demo's stream");
    let published = stream.info().await.unwrap().state.messages;
    assert!(published > 5, "warehouse messages published: {published}");
    let info = consumer_info(
        &js,
        &NatsInboundSettings {
            stream: stream_name.clone(),
            durable: "stockd".into(),
            ..settings("demo", Duration::from_secs(30))
        },
    )
    .await;
    assert_eq!(info.num_pending, 0, "{info:?}");
    assert_eq!(
        info.ack_floor.stream_sequence, published,
        "every message acknowledged"
    );
    js.delete_stream(&stream_name).await.expect("delete stream");
}
