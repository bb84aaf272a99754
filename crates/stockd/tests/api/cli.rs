//! The `stockd` command line, run as a process: exit codes, configuration
//! precedence, `import variants`, `events` and `stock`, directly on a database
//! and through a running server.

use crate::helpers::{sqlite_url, TestApp};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;

/// Variables the command reads; removed so the caller's environment cannot leak in.
const STOCKD_VARS: [&str; 8] = [
    "STOCKD_CONFIG",
    "STOCKD_LISTEN",
    "STOCKD_DATABASE_URL",
    "STOCKD_LOG_FORMAT",
    "STOCKD_LOG",
    "STOCKD_SERVER",
    "STOCKD_TOKEN",
    "RUST_LOG",
];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {:?}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `stockd ARGS` with `env`, off the async runtime so an in-process
/// server can answer it meanwhile.
async fn stockd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stockd"));
        for var in STOCKD_VARS {
            command.env_remove(var);
        }
        command.args(&args).envs(env).output()
    })
    .await
    .expect("join")
    .expect("stockd runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

#[tokio::test]
async fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir);
    let help = stockd(&["--help"], &[]).await.expect(0);
    assert!(help.stdout.contains("serve") && help.stdout.contains("Exit codes"));
    for sub in ["serve", "migrate", "import", "events", "stock", "rules"] {
        stockd(&[sub, "--help"], &[]).await.expect(0);
    }
    stockd(&["import", "variants", "--help"], &[])
        .await
        .expect(0);
    for sub in [
        "validate", "preview", "apply", "diff", "rollback", "history",
    ] {
        stockd(&["rules", sub, "--help"], &[]).await.expect(0);
    }
    stockd(&["import", "listings", "--help"], &[])
        .await
        .expect(0);
    stockd(&["serve", "--nope"], &[]).await.expect(2);
    stockd(&["frobnicate"], &[]).await.expect(2);
    let refused = stockd(&["serve", "--listen", "0.0.0.0:0", "--database", &db], &[])
        .await
        .expect(2);
    assert!(
        refused.stderr.contains("without API tokens"),
        "{}",
        refused.stderr
    );
    let missing = dir.path().join("missing.toml").display().to_string();
    stockd(&["migrate", "--config", &missing], &[])
        .await
        .expect(2);
    let config = write(
        dir.path(),
        "tokens.toml",
        "[[auth.tokens]]\nname = \"erp\"\nrole = \"ingest\"\ntoken_env = \"NO_SUCH_VAR_FOR_STOCKD\"\n",
    );
    let bad = stockd(&["serve", "--config", &config, "--database", &db], &[])
        .await
        .expect(2);
    assert!(
        bad.stderr.contains("NO_SUCH_VAR_FOR_STOCKD is not set"),
        "{}",
        bad.stderr
    );

    stockd(&["migrate", "--database", &db], &[]).await.expect(0);
    let unknown = stockd(&["stock", "NOPE", "--database", &db], &[])
        .await
        .expect(1);
    assert!(unknown.stderr.contains("unknown sku"), "{}", unknown.stderr);
}

#[tokio::test]
async fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let file_db = format!("sqlite://{}", dir.path().join("file.db").display());
    let env_db = format!("sqlite://{}", dir.path().join("env.db").display());
    let config = write(
        dir.path(),
        "stockd.toml",
        &format!("database = \"{file_db}\"\n"),
    );
    let csv = write(dir.path(), "v.csv", "sku,title\nFROM-FILE,x\n");
    stockd(&["import", "variants", &csv, "--config", &config], &[])
        .await
        .expect(0);
    // The file's database holds the variant...
    stockd(&["stock", "FROM-FILE"], &[("STOCKD_CONFIG", &config)])
        .await
        .expect(0);
    // ...the environment's does not, and beats the file...
    stockd(
        &["stock", "FROM-FILE", "--config", &config],
        &[("STOCKD_DATABASE_URL", &env_db)],
    )
    .await
    .expect(1);
    // ...and the flag beats the environment.
    stockd(
        &[
            "stock",
            "FROM-FILE",
            "--config",
            &config,
            "--database",
            &file_db,
        ],
        &[("STOCKD_DATABASE_URL", &env_db)],
    )
    .await
    .expect(0);
}

#[tokio::test]
async fn import_events_and_stock_through_a_server() {
    let app = TestApp::sqlite().await;
    app.location("AMS", true, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let server = app.base.clone();
    let csv = write(
        dir.path(),
        "variants.csv",
        "sku,title,product_id,gtin\nTEE-M,Tee M,TEE,8712345678906\nTEE-L,Tee L,TEE,\n",
    );
    let imported = stockd(&["import", "variants", &csv, "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(imported.json(), json!({"upserted": 2, "replayed": 0}));

    let jsonl = write(
        dir.path(),
        "events.jsonl",
        &[
            r#"{"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 5}"#,
            "",
            r#"{"key": "o1", "type": "order", "order_id": "1", "lines": [{"line_id": "1", "sku": "TEE-M", "qty": 2}]}"#,
            "   ",
            r#"{"key": "q1", "type": "receipt", "sku": "TEE-XL", "location": "AMS", "qty": 1}"#,
            "",
        ]
        .join("\n"),
    );
    let sent = stockd(&["events", &jsonl, "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(
        sent.json(),
        json!({"applied": 2, "duplicate": 0, "quarantined": 1})
    );
    let again = stockd(&["events", &jsonl, "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(
        again.json(),
        json!({"applied": 0, "duplicate": 3, "quarantined": 0})
    );

    let stock = stockd(&["stock", "TEE-M", "--server", &server], &[])
        .await
        .expect(0);
    let view = stock.json();
    assert_eq!(
        (view["on_hand"].as_i64(), view["available"].as_i64()),
        (Some(5), Some(3))
    );
    stockd(&["stock", "TEE-XL", "--server", &server], &[])
        .await
        .expect(1);

    // A refused chunk names the line.
    let conflict = write(
        dir.path(),
        "conflict.jsonl",
        r#"{"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 6}"#,
    );
    let refused = stockd(&["events", &conflict, "--server", &server], &[])
        .await
        .expect(1);
    assert!(
        refused.stderr.contains("idempotency_key_reused") && refused.stderr.contains("line 1"),
        "{}",
        refused.stderr
    );
    app.stop().await;
}

#[tokio::test]
async fn events_stop_at_an_invalid_line_before_sending_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir);
    let json_variants = write(dir.path(), "variants.json", r#"[{"sku": "A"}]"#);
    stockd(
        &["import", "variants", &json_variants, "--database", &db],
        &[],
    )
    .await
    .expect(0);
    let good = r#"{"key": "r1", "type": "receipt", "sku": "A", "location": "AMS", "qty": 1}"#;
    let jsonl = write(
        dir.path(),
        "events.jsonl",
        &[
            good,
            "",
            r#"{"key": "r2", "type": "receipt", "sku": "A", "location": "AMS"}"#,
        ]
        .join("\n"),
    );
    let stopped = stockd(&["events", &jsonl, "--database", &db], &[])
        .await
        .expect(1);
    assert!(
        stopped.stderr.contains("line 3") && stopped.stderr.contains("qty"),
        "{}",
        stopped.stderr
    );
    assert_eq!(
        stopped.json(),
        json!({"applied": 0, "duplicate": 0, "quarantined": 0})
    );
    let not_json = write(dir.path(), "broken.jsonl", &[good, "{not json"].join("\n"));
    let stopped = stockd(&["events", &not_json, "--database", &db], &[])
        .await
        .expect(1);
    assert!(stopped.stderr.contains("line 2"), "{}", stopped.stderr);

    // Nothing was sent: the good line applies (quarantined: no location AMS yet) only now.
    let ok = write(dir.path(), "ok.jsonl", good);
    let sent = stockd(&["events", &ok, "--database", &db], &[])
        .await
        .expect(0);
    assert_eq!(
        sent.json(),
        json!({"applied": 0, "duplicate": 0, "quarantined": 1})
    );

    let bad_csv = write(dir.path(), "bad.csv", "sku,gtin\nB,8712345678907\n");
    let refused = stockd(&["import", "variants", &bad_csv, "--database", &db], &[])
        .await
        .expect(1);
    assert!(
        refused.stderr.contains("line 2: gtin"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm_and_keeps_accepted_events() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir);
    let serve_db = db.clone();
    // Start `stockd serve` on port 0 and read the bound address from its JSON log.
    let (mut child, addr, mut log_lines) = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stockd"));
        for var in STOCKD_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &serve_db])
            .args(["--log-format", "json", "--log-filter", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
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
        (child, addr, lines)
    })
    .await
    .expect("join");

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let send = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let put = reqwest::Method::PUT;
    assert_eq!(
        send(put.clone(), "/v1/locations/AMS", json!({"name": "A"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(put, "/v1/variants/TEE", json!({}))
            .await
            .unwrap()
            .status(),
        200
    );
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"key": format!("r{i}"), "type": "receipt", "sku": "TEE", "location": "AMS", "qty": 1}))
        .collect();
    let reply = send(reqwest::Method::POST, "/v1/events", Value::Array(events))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    let pid = child.id().to_string();
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let rest: Vec<String> = log_lines.by_ref().map_while(Result::ok).collect();
        (child.wait().expect("stockd exits"), rest)
    })
    .await
    .expect("join");
    assert!(status.success(), "exit status {status:?}; log: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");

    // Every accepted event is in the database.
    let store = stockd_store::open(&db).await.expect("store reopens");
    let sku = stockd_core::Sku::parse("TEE").unwrap();
    let view = store.stock(&sku).await.expect("stock").expect("known sku");
    assert_eq!(view.on_hand, 50);
    store.close().await;
}

#[tokio::test]
async fn rules_and_listings_from_files() {
    let app = TestApp::sqlite().await;
    app.location("AMS", true, 1).await;
    app.variants(&["TEE-M", "TEE-L"]).await;
    app.put("/v1/channels/bol", json!({"kind": "bol"}))
        .await
        .expect(200);
    app.events(
        json!([{"key": "r1", "type": "receipt", "sku": "TEE-M", "location": "AMS", "qty": 10}]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = app.base.clone();

    let csv = write(
        dir.path(),
        "listings.csv",
        "sku,rank,external.offer_id\nTEE-M,1,OFFER-1\nTEE-L,,\n",
    );
    let imported = stockd(
        &[
            "import",
            "listings",
            &csv,
            "--channel",
            "bol",
            "--server",
            &server,
        ],
        &[],
    )
    .await
    .expect(0);
    assert_eq!(imported.json(), json!({"upserted": 2}));
    let page = app.get("/v1/channels/bol/listings").await.expect(200).body;
    // In SKU order: TEE-L, TEE-M.
    assert_eq!(page["items"][0]["external"], json!({}));
    assert_eq!(page["items"][1]["external"], json!({"offer_id": "OFFER-1"}));
    assert_eq!(page["items"][1]["rank"], 1);
    let bad = write(dir.path(), "bad.csv", "sku\nTEE-XL\n");
    let refused = stockd(
        &[
            "import",
            "listings",
            &bad,
            "--channel",
            "bol",
            "--server",
            &server,
        ],
        &[],
    )
    .await
    .expect(1);
    assert!(
        refused.stderr.contains("unknown_sku") && refused.stderr.contains("listing 0: sku"),
        "{}",
        refused.stderr
    );

    let good = write(
        dir.path(),
        "rules.toml",
        "[defaults]\nsafety_stock = 2\n\n[channels.bol]\npercent = 50\n",
    );
    let valid = stockd(&["rules", "validate", &good, "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(valid.json(), json!({"valid": true}));
    let invalid = write(
        dir.path(),
        "invalid.toml",
        "[channels.bol]\npercent = 150\n\n[channels.ebay]\nsafety_stock = 1\n",
    );
    let refused = stockd(&["rules", "validate", &invalid, "--server", &server], &[])
        .await
        .expect(1);
    assert!(
        refused.stderr.contains("channels.bol.percent")
            && refused.stderr.contains("percent_out_of_range")
            && refused.stderr.contains("channels.ebay")
            && refused.stderr.contains("unknown_channel"),
        "{}",
        refused.stderr
    );
    let unknown_key = write(
        dir.path(),
        "unknown.toml",
        "[defaults]\nsafety_stock = 1\ncolour = \"red\"\n",
    );
    let refused = stockd(
        &["rules", "validate", &unknown_key, "--server", &server],
        &[],
    )
    .await
    .expect(1);
    assert!(
        refused.stderr.contains("colour")
            && refused.stderr.contains("line 3")
            && refused.stderr.contains("defaults.colour"),
        "{}",
        refused.stderr
    );
    let broken = write(dir.path(), "broken.toml", "[defaults\n");
    let refused = stockd(&["rules", "validate", &broken, "--server", &server], &[])
        .await
        .expect(1);
    assert!(refused.stderr.contains("line 1"), "{}", refused.stderr);

    let preview = stockd(&["rules", "preview", &good, "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(preview.json()["summary"]["decreased"], 1);
    let applied = stockd(
        &[
            "rules",
            "apply",
            &good,
            "--message",
            "from the cli",
            "--server",
            &server,
        ],
        &[],
    )
    .await
    .expect(0);
    assert_eq!(applied.json()["version"], 1);
    let refused = stockd(
        &[
            "rules",
            "apply",
            &invalid,
            "--message",
            "x",
            "--server",
            &server,
        ],
        &[],
    )
    .await
    .expect(1);
    assert!(
        refused.stderr.contains("percent_out_of_range"),
        "{}",
        refused.stderr
    );
    let page = app.get("/v1/channels/bol/listings").await.expect(200).body;
    assert_eq!(page["items"][1]["quantity"], 4, "(10 − 2) × 50 %");
    let history = stockd(&["rules", "history", "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(history.json()["items"][0]["message"], "from the cli");
    stockd(
        &[
            "rules",
            "rollback",
            "1",
            "--message",
            "again",
            "--server",
            &server,
        ],
        &[],
    )
    .await
    .expect(0);
    let diff = stockd(&["rules", "diff", "0", "2", "--server", &server], &[])
        .await
        .expect(0);
    assert_eq!(
        diff.json()["changes"],
        json!([
            {"path": "channels.bol.percent", "from": null, "to": 50},
            {"path": "defaults.safety_stock", "from": null, "to": 2},
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn rules_on_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir);
    let rules = write(dir.path(), "rules.toml", "[channels.bol]\npercent = 50\n");
    // No channel bol in this database.
    let refused = stockd(&["rules", "validate", &rules, "--database", &db], &[])
        .await
        .expect(1);
    assert!(
        refused.stderr.contains("channels.bol") && refused.stderr.contains("unknown_channel"),
        "{}",
        refused.stderr
    );
    let empty = write(dir.path(), "empty.toml", "[defaults]\nsafety_stock = 1\n");
    let applied = stockd(
        &["rules", "apply", &empty, "-m", "first", "--database", &db],
        &[("USER", "tester")],
    )
    .await
    .expect(0);
    assert_eq!(applied.json()["author"], "cli:tester");
    let history = stockd(&["rules", "history", "--database", &db], &[])
        .await
        .expect(0);
    assert_eq!(history.json()["items"][0]["version"], 1);
}

#[tokio::test]
async fn import_feed_applies_a_supplier_file_and_refuses_a_truncated_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir);
    let config = write(
        dir.path(),
        "stockd.toml",
        &format!(
            "database = \"{db}\"\n\n[[feeds]]\nid = \"acme\"\nsupplier = \"ACME\"\nformat = \"csv\"\n\
             mode = \"supplier_stock\"\nlocation = \"SUP\"\n[feeds.columns]\nsku = \"item\"\nqty = \"stock\"\n"
        ),
    );
    let variants = write(dir.path(), "v.csv", "sku\nA\nB\nC\n");
    stockd(&["import", "variants", &variants, "--config", &config], &[])
        .await
        .expect(0);
    let feed = write(dir.path(), "feed.csv", "item,stock\nA,4\nB,oops\nC,2\n");
    let run = stockd(
        &[
            "import", "feed", &feed, "--feed", "acme", "--config", &config,
        ],
        &[],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(run["status"], "applied");
    assert_eq!(
        (run["rows_applied"].as_u64(), run["rows_bad"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(run["problems"][0]["line"], 3);
    assert_eq!(run["problems"][0]["column"], "stock");
    let truncated = write(dir.path(), "short.csv", "item,stock\n");
    let refused = stockd(
        &[
            "import", "feed", &truncated, "--feed", "acme", "--config", &config,
        ],
        &[],
    )
    .await
    .expect(1);
    assert!(
        refused.stderr.contains("feed_truncated"),
        "{}",
        refused.stderr
    );
    stockd(
        &[
            "import", "feed", &feed, "--feed", "nope", "--config", &config,
        ],
        &[],
    )
    .await
    .expect(2);
}
