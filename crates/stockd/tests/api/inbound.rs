//! Inbound over NATS JetStream, against the real server named by
//! `STOCKD_TEST_NATS_URL` (default `nats://127.0.0.1:4222`; skipped loudly
//! when unreachable, unless STOCKD_REQUIRE_SERVICES=1). Each test uses a
//! stream and subjects of its own and deletes the stream at the end.

use crate::helpers::{config, free_port, receipt, sqlite_url, TestApp};
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

/// A `stockd serve` process; killed when dropped.
struct ServeProcess {
    child: std::process::Child,
    base: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The variables the command reads; removed so the caller's cannot leak in.
const STOCKD_VARS: [&str; 9] = [
    "STOCKD_CONFIG",
    "STOCKD_LISTEN",
    "STOCKD_DATABASE_URL",
    "STOCKD_LOG_FORMAT",
    "STOCKD_LOG",
    "STOCKD_SERVER",
    "STOCKD_TOKEN",
    "STOCKD_FAILPOINT",
    "RUST_LOG",
];

fn serve_command(config: &std::path::Path, database_url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stockd"));
    for var in STOCKD_VARS {
        command.env_remove(var);
    }
    command
        .arg("--config")
        .arg(config)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            database_url,
        ])
        .args(["--log-format", "json", "--log-filter", "info"])
        .stdout(std::process::Stdio::null());
    command
}

/// Starts `stockd serve` and waits for the address it logs.
async fn serve_process(config: std::path::PathBuf, database_url: String) -> ServeProcess {
    use std::io::{BufRead, BufReader};
    tokio::task::spawn_blocking(move || {
        let mut child = serve_command(&config, &database_url)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("stockd serve starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("stockd serve logs its address before exiting")
                .expect("readable log");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "stockd listening" {
                break entry["addr"].as_str().expect("addr").to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ServeProcess {
            child,
            base: format!("http://{addr}"),
        }
    })
    .await
    .expect("join")
}

/// kill -9 between commit and ack, for real: a `stockd serve` process with
/// the test hook `STOCKD_FAILPOINT=nats_after_commit` aborts right after its
/// first batch commits, before any ack. Restarted on the same database, it
/// gets the message again after the ack wait, recognises every event as a
/// duplicate and acknowledges it; nothing is applied twice.
#[tokio::test]
async fn killed_between_commit_and_ack_the_redelivery_is_a_duplicate() {
    let Some(client) = nats("killed_between_commit_and_ack").await else {
        return;
    };
    let js = jetstream::new(client.clone());
    let s = settings("killed", Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = sqlite_url(&dir);
    {
        let app = TestApp::start(config(url.clone()), tempfile::tempdir().unwrap()).await;
        catalog(&app, &["A"]).await;
        app.stop().await;
    }
    stockd::inbound::nats::bind(&js, &s)
        .await
        .expect("stream and consumer");
    publish(
        &js,
        &subject(&s, "wms"),
        json!([receipt("k1", "A", "AMS", 3), receipt("k2", "A", "AMS", 4)]).to_string(),
    )
    .await;
    let config_path = dir.path().join("stockd.toml");
    std::fs::write(
        &config_path,
        format!(
            "[inbound.nats]\nurl = {:?}\nstream = {:?}\nsubjects = [{:?}]\ndurable = {:?}\nack_wait_secs = 1\n",
            s.url, s.stream, s.subjects[0], s.durable
        ),
    )
    .unwrap();

    // First life: commit, then abort before the ack.
    let first_life = {
        let (config_path, url) = (config_path.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let mut child = serve_command(&config_path, &url)
                .env("STOCKD_FAILPOINT", "nats_after_commit")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("stockd serve starts");
            let mut stderr = child.stderr.take().expect("stderr");
            let reader = std::thread::spawn(move || {
                let mut log = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
                log
            });
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let status = loop {
                if let Some(status) = child.try_wait().expect("exit status") {
                    break Some(status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            (status, reader.join().unwrap_or_default())
        })
    };
    let (status, log) = first_life.await.expect("join");
    let status =
        status.unwrap_or_else(|| panic!("stockd did not reach the failpoint in 30 s:\n{log}"));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "aborted (SIGABRT): {status:?}\n{log}"
    );
    assert!(log.contains("failpoint nats_after_commit"), "{log}");
    {
        let store = stockd_store::open(&url).await.expect("store");
        let sku = stockd_core::Sku::parse("A").unwrap();
        let view = store.stock(&sku).await.unwrap().expect("A");
        assert_eq!(view.on_hand, 7, "the batch committed before the abort");
        store.close().await;
    }
    let info = consumer_info(&js, &s).await;
    assert_eq!(
        (info.num_ack_pending, info.ack_floor.stream_sequence),
        (1, 0),
        "not acknowledged: {info:?}"
    );

    // Second life on the same database: the redelivery is a duplicate.
    let server = serve_process(config_path, url).await;
    eventually("the redelivery acknowledged", || async {
        let info = consumer_info(&js, &s).await;
        info.num_ack_pending == 0 && info.num_pending == 0 && info.ack_floor.stream_sequence == 1
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{}{path}", server.base));
        async move { request.send().await.expect("answer") }
    };
    let stock: Value = get("/v1/stock/A").await.json().await.unwrap();
    assert_eq!(stock["on_hand"], 7, "applied once: {stock}");
    let ledger: Value = get("/v1/ledger?sku=A").await.json().await.unwrap();
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2, "{ledger}");
    let metrics = get("/metrics").await.text().await.unwrap();
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
    drop(server);
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

/// A `nats-server -js` of the test's own, on a free port with its own
/// storage directory; killed when dropped.
struct OwnNatsServer {
    child: std::process::Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const NATS_SERVER_BIN: &str = "/usr/sbin/nats-server";

/// Starts `nats-server -js` with `auth` flags, or `None` after a loud skip
/// when the binary is missing (a failure when STOCKD_REQUIRE_SERVICES=1).
async fn own_nats_server(test_name: &str, auth: &[&str]) -> Option<OwnNatsServer> {
    own_nats_server_on(test_name, free_port(), auth).await
}

async fn own_nats_server_on(test_name: &str, port: u16, auth: &[&str]) -> Option<OwnNatsServer> {
    let bin = std::env::var("STOCKD_TEST_NATS_SERVER").unwrap_or_else(|_| NATS_SERVER_BIN.into());
    if !std::path::Path::new(&bin).exists() {
        if services_required() {
            panic!("{bin} is missing and STOCKD_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED {test_name}: {bin} is missing; set STOCKD_TEST_NATS_SERVER to a nats-server binary");
        return None;
    }
    let store = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(&bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .args(auth)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let server = OwnNatsServer {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _store: store,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nats-server did not listen on port {port}");
}

/// `[inbound.nats]` of a config file, resolved with `env` as the environment.
fn resolved(toml_text: &str, env: &[(&str, &str)]) -> NatsInboundSettings {
    let file: stockd::config::FileConfig = toml::from_str(toml_text).expect("config toml");
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    };
    file.inbound
        .resolve(&lookup)
        .expect("valid [inbound.nats]")
        .nats
        .expect("nats settings")
}

/// Credentials come from the environment: a server that demands them
/// refuses wrong ones with a clear error (and stockd consumes nothing),
/// and the right ones consume. User and password, then a token.
#[tokio::test]
async fn nats_credentials_come_from_the_environment() {
    for (auth, keys, right, wrong) in [
        (
            vec!["--user", "erp", "--pass", "s3cret-pass"],
            "user_env = \"ERP_NATS_USER\"\npassword_env = \"ERP_NATS_PASSWORD\"",
            vec![
                ("ERP_NATS_USER", "erp"),
                ("ERP_NATS_PASSWORD", "s3cret-pass"),
            ],
            vec![("ERP_NATS_USER", "erp"), ("ERP_NATS_PASSWORD", "guess")],
        ),
        (
            vec!["--auth", "s3cret-token"],
            "token_env = \"ERP_NATS_TOKEN\"",
            vec![("ERP_NATS_TOKEN", "s3cret-token")],
            vec![("ERP_NATS_TOKEN", "guess")],
        ),
    ] {
        let Some(server) = own_nats_server("nats_credentials", &auth).await else {
            return;
        };
        let text = |unique: &str| {
            format!(
                "[inbound.nats]\nurl = \"{}\"\nstream = \"ERP_{unique}\"\nsubjects = [\"erp.{unique}.>\"]\ndurable = \"stockd\"\n{keys}\n",
                server.url
            )
        };
        let good = resolved(&text("A"), &right);
        let bad = resolved(&text("A"), &wrong);
        let anonymous = NatsInboundSettings {
            auth: NatsAuth::None,
            ..good.clone()
        };

        for refused in [&bad, &anonymous] {
            let error = stockd::inbound::nats::connect(refused)
                .await
                .expect_err("wrong credentials are refused")
                .to_string();
            assert!(
                error.starts_with("nats_unauthorized: NATS at nats://127.0.0.1:")
                    && error.contains("refused stockd's credentials")
                    && error.contains("authorization violation"),
                "{error}"
            );
            assert!(
                !error.contains("s3cret") && !error.contains("guess"),
                "no secret in {error}"
            );
        }

        // A publisher with the right credentials fills the stream.
        let client = stockd::inbound::nats::connect(&good)
            .await
            .expect("right credentials");
        let js = jetstream::new(client);
        stockd::inbound::nats::bind(&js, &good)
            .await
            .expect("stream and consumer");
        publish(
            &js,
            "erp.A.wms",
            receipt("cred-1", "A", "AMS", 4).to_string(),
        )
        .await;

        // stockd with wrong credentials consumes nothing.
        let wrong_settings = bad.clone();
        let app = TestApp::sqlite_with(|c| c.inbound.nats = Some(wrong_settings)).await;
        catalog(&app, &["A"]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(on_hand(&app, "A").await, 0);
        let metrics = app.get("/metrics").await.expect(200).text;
        assert_eq!(
            metric(
                &metrics,
                r#"stockd_inbound_messages_total{outcome="received"}"#
            ),
            Some(0)
        );
        assert_eq!(consumer_info(&js, &good).await.num_pending, 1);
        app.stop().await;

        // With the right ones it consumes and acknowledges.
        let right_settings = good.clone();
        let app = TestApp::sqlite_with(|c| c.inbound.nats = Some(right_settings)).await;
        catalog(&app, &["A"]).await;
        // The message may have come before the catalog: it waits in quarantine
        // until the variant exists, so look at the bus and the ledger.
        eventually("the message acknowledged", || async {
            let info = consumer_info(&js, &good).await;
            info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence == 1
        })
        .await;
        let metrics = app.get("/metrics").await.expect(200).text;
        assert_eq!(
            metric(
                &metrics,
                r#"stockd_inbound_messages_total{outcome="received"}"#
            ),
            Some(1)
        );
        app.stop().await;
        drop(server);
    }
}

fn metric_f64(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The publisher's metrics: while the bus is down, failures count and the
/// lag (oldest unpublished change) grows; once it is up, the change is
/// published and the lag is back to 0.
#[tokio::test]
async fn outbound_metrics_show_failures_and_lag_while_the_bus_is_down() {
    let port = free_port();
    let outbound = stockd::outbound::publish::NatsOutboundSettings {
        url: format!("nats://127.0.0.1:{port}"),
        auth: NatsAuth::None,
        subject_prefix: "stockd.stock".into(),
        stream: "STOCKD_STOCK".into(),
    };
    let app = TestApp::sqlite_with(|c| c.inbound.outbound_nats = Some(outbound)).await;
    catalog(&app, &["A"]).await;
    app.events(receipt("down-1", "A", "AMS", 2)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let metrics = app.get("/metrics").await.expect(200).text;
    assert_eq!(
        metric(&metrics, "stockd_outbound_messages_published_total"),
        Some(0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "stockd_outbound_publish_failures_total").unwrap_or(0) >= 1,
        "{metrics}"
    );
    let lag = metric_f64(&metrics, "stockd_outbound_publish_lag_seconds").expect("lag");
    assert!(lag >= 1.0, "the change waits since the event: {lag}");

    let Some(server) = own_nats_server_on("outbound_metrics", port, &[]).await else {
        app.stop().await;
        return;
    };
    eventually("the change published", || async {
        let metrics = app.get("/metrics").await.expect(200).text;
        metric(&metrics, "stockd_outbound_messages_published_total") == Some(1)
            && metric_f64(&metrics, "stockd_outbound_publish_lag_seconds") == Some(0.0)
    })
    .await;
    app.stop().await;
    drop(server);
}
