//! The test harness: each test spawns its own server on 127.0.0.1:0 with a
//! fresh database (an SQLite file in a temporary directory, or a fresh
//! PostgreSQL database) and talks to it with reqwest.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::net::SocketAddr;
use stockd::auth::{ApiToken, Role};
use stockd::config::{Secret, ServeConfig};
use stockd::RunningServer;
use tempfile::TempDir;

/// A server configuration for tests: loopback, port 0, no tokens.
pub fn config(database_url: String) -> ServeConfig {
    ServeConfig::plain(SocketAddr::from(([127, 0, 0, 1], 0)), database_url)
}

pub fn token(name: &str, role: Role, secret: &str) -> ApiToken {
    ApiToken {
        name: name.to_string(),
        role,
        secret: Secret::new(secret),
    }
}

/// A fresh SQLite database URL in `dir`.
pub fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("stockd.db").display())
}

/// An answer from the server.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Reply {
    /// `error.code` of a JSON error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// `(index, field)` of every error detail.
    pub fn detail_fields(&self) -> Vec<(u64, String)> {
        self.body["error"]["details"]
            .as_array()
            .map(|details| {
                details
                    .iter()
                    .map(|d| {
                        (
                            d["index"].as_u64().unwrap_or(u64::MAX),
                            d["field"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self
    }

    /// Asserts an error status and code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Reply {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/json"), "errors are JSON");
        self
    }
}

pub struct TestApp {
    server: RunningServer,
    pub base: String,
    client: reqwest::Client,
    /// Sent as bearer token with every request when set.
    pub token: Option<String>,
    _dir: TempDir,
}

impl TestApp {
    pub async fn start(config: ServeConfig, dir: TempDir) -> TestApp {
        let server = stockd::spawn(config).await.expect("server starts");
        TestApp {
            base: server.url(),
            server,
            client: reqwest::Client::new(),
            token: None,
            _dir: dir,
        }
    }

    /// A server on a fresh SQLite file.
    pub async fn sqlite() -> TestApp {
        TestApp::sqlite_with(|_| {}).await
    }

    /// A server on a fresh SQLite file, with its configuration edited first.
    pub async fn sqlite_with(edit: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = config(sqlite_url(&dir));
        edit(&mut config);
        TestApp::start(config, dir).await
    }

    /// A server on a fresh PostgreSQL database; `None` (the test is skipped,
    /// loudly) when PostgreSQL is unreachable and not required.
    pub async fn postgres(test_name: &str) -> Option<TestApp> {
        let url = stockd_store::test_support::fresh_postgres_url(test_name).await?;
        let dir = tempfile::tempdir().expect("temporary directory");
        Some(TestApp::start(config(url), dir).await)
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }

    /// Sends a request with a raw body and content type.
    pub async fn send(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            "POST",
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(
            "PUT",
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// Posts events and expects them all accepted; returns the results.
    pub async fn events(&self, events: Value) -> Vec<Value> {
        let reply = self.post("/v1/events", events).await.expect(200);
        reply.body["results"].as_array().expect("results").clone()
    }

    /// The stock view of a SKU (which must exist).
    pub async fn stock(&self, sku: &str) -> Value {
        self.get(&format!("/v1/stock/{sku}")).await.expect(200).body
    }

    /// Waits (15 s at most) until the stock view of `sku` passes `check`;
    /// `what` names the wait in the failure.
    pub async fn stock_when(&self, sku: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let stock = self.stock(sku).await;
            if check(&stock) {
                return stock;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {stock}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Creates a sellable location with a priority.
    pub async fn location(&self, id: &str, sellable: bool, priority: i32) {
        self.put(
            &format!("/v1/locations/{id}"),
            json!({"name": format!("{id} warehouse"), "sellable": sellable, "priority": priority}),
        )
        .await
        .expect(200);
    }

    /// Creates variants with default fields.
    pub async fn variants(&self, skus: &[&str]) {
        let items: Vec<Value> = skus.iter().map(|sku| json!({"sku": sku})).collect();
        self.post("/v1/variants", Value::Array(items))
            .await
            .expect(200);
    }
}

/// A receipt event.
pub fn receipt(key: &str, sku: &str, location: &str, qty: i64) -> Value {
    json!({"key": key, "type": "receipt", "sku": sku, "location": location, "qty": qty})
}

/// The `(status, seq)` pairs of event results.
pub fn statuses(results: &[Value]) -> Vec<(String, Option<u64>)> {
    results
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap_or("").to_string(),
                r["seq"].as_u64(),
            )
        })
        .collect()
}

/// Runs each named contract test (`async fn name(app: &TestApp)` in the
/// calling module) once on SQLite and once on PostgreSQL.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = $crate::helpers::TestApp::sqlite().await;
                    super::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(app) = $crate::helpers::TestApp::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}
pub(crate) use on_both_stores;

/// A port for a server a test starts later (its address is handed to
/// simulators or clients first). Taken below Linux's ephemeral range
/// (32768–60999): everything else in the tests binds port 0, which the
/// kernel serves from that range, so nothing can be handed this port
/// between the choice and the bind (a port from port 0 was, now and then).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let port = (FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}
