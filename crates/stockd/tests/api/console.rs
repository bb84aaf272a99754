//! The operator console: access control over plain HTTP (sessions, roles,
//! CSRF, loopback without tokens), search on both stores, and the key flows
//! in a real browser — headless Chromium driven over WebDriver by the small
//! client below — asserting on what a person sees.

use crate::helpers::{config, free_port, receipt, sqlite_url, token, TestApp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd::auth::Role;
use stockd_channels::{woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::{Faults, RunningSim};

const ADMIN_TOKEN: &str = "admin-secret-token";
const READ_TOKEN: &str = "read-secret-token";

/// A plain HTTP client that keeps the session cookie and does not follow redirects.
struct Browser {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    text: String,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Page {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie.clone());
        }
        if let Some(form) = form {
            let body: String = form
                .iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let response = request.send().await.expect("request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let set_cookie = header("set-cookie");
        if let Some(sc) = &set_cookie {
            let pair = sc.split(';').next().unwrap_or("").to_string();
            self.cookie = Some(pair);
        }
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        Page {
            status,
            location,
            set_cookie,
            text,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(reqwest::Method::POST, path, Some(form)).await
    }

    /// Signs in with `token`; panics unless it is accepted.
    async fn sign_in(&mut self, token: &str) {
        let page = self
            .post("/signin", &[("token", token), ("next", "/")])
            .await;
        assert_eq!(page.status, 303, "{}", page.text);
    }

    /// The CSRF token of the session, read from a page's sign-out form.
    async fn csrf(&mut self) -> String {
        let page = self.get("/stock").await;
        let marker = "name=\"csrf\" value=\"";
        let start = page.text.find(marker).expect("a csrf field") + marker.len();
        page.text[start..start + 64].to_string()
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn with_tokens() -> TestApp {
    TestApp::sqlite_with(|c| {
        c.tokens = vec![
            token("ops", Role::Admin, ADMIN_TOKEN),
            token("viewer", Role::Read, READ_TOKEN),
        ];
    })
    .await
}

#[tokio::test]
async fn without_a_session_the_console_sends_to_sign_in_and_a_token_opens_it() {
    let app = with_tokens().await;
    let mut b = Browser::new(&app.base);
    let page = b.get("/stock/A?x=1").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location.as_deref(),
        Some("/signin?next=%2Fstock%2FA%3Fx%3D1")
    );
    let page = b.get("/signin").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("API token"));
    let page = b
        .post("/signin", &[("token", "wrong"), ("next", "/")])
        .await;
    assert_eq!(page.status, 401);
    assert!(page.text.contains("That token is not valid."));
    assert!(b.cookie.is_none());
    let page = b
        .post("/signin", &[("token", READ_TOKEN), ("next", "/rules")])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/rules"));
    let cookie = page.set_cookie.expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    // An open redirect is not possible.
    let mut other = Browser::new(&app.base);
    let page = other
        .post(
            "/signin",
            &[("token", READ_TOKEN), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/"));
    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("viewer · read"));
    // Signing out ends the session.
    let csrf = b.csrf().await;
    let page = b.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 303);
    let page = b.get("/").await;
    assert_eq!(page.status, 303);
    app.stop().await;
}

#[tokio::test]
async fn a_read_session_sees_no_buttons_that_change_things_and_is_refused_anyway() {
    let app = with_tokens().await;
    let mut b = Browser::new(&app.base);
    b.sign_in(READ_TOKEN).await;
    let rules = b.get("/rules").await;
    assert_eq!(rules.status, 200);
    assert!(!rules.text.contains("Preview the impact"));
    assert!(rules.text.contains("readonly"));
    assert!(rules.text.contains("needs an admin token"));
    let csrf = b.csrf().await;
    let doc = json!({"defaults": {"safety_stock": 1}}).to_string();
    for (path, form) in [
        (
            "/rules/preview",
            vec![("csrf", csrf.as_str()), ("rules", doc.as_str())],
        ),
        (
            "/rules/apply",
            vec![
                ("csrf", csrf.as_str()),
                ("rules", doc.as_str()),
                ("message", "x"),
            ],
        ),
        (
            "/rules/rollback",
            vec![("csrf", csrf.as_str()), ("version", "1"), ("message", "x")],
        ),
        ("/dlq/1/retry", vec![("csrf", csrf.as_str())]),
        ("/dlq/1/discard", vec![("csrf", csrf.as_str())]),
        ("/quarantine/1/discard", vec![("csrf", csrf.as_str())]),
    ] {
        let page = b.post(path, &form).await;
        assert_eq!(page.status, 403, "{path}: {}", page.text);
        assert!(page.text.contains("needs the admin role"), "{path}");
    }
    let mut api = reqwest::Client::new()
        .get(format!("{}/v1/rules", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(api.status().as_u16(), 404, "no rules were applied");
    api = reqwest::Client::new()
        .get(format!("{}/v1/rules", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(api.status().as_u16(), 401, "the API still wants its token");
    app.stop().await;
}

#[tokio::test]
async fn posts_without_the_session_csrf_token_are_refused() {
    let app = with_tokens().await;
    let mut b = Browser::new(&app.base);
    b.sign_in(ADMIN_TOKEN).await;
    let doc = json!({"defaults": {"safety_stock": 1}}).to_string();
    let page = b
        .post("/rules/apply", &[("rules", &doc), ("message", "no token")])
        .await;
    assert_eq!(page.status, 403);
    assert!(page.text.contains("security token"));
    let page = b
        .post(
            "/rules/apply",
            &[
                ("csrf", &"0".repeat(64)),
                ("rules", &doc),
                ("message", "wrong token"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    // Another session's token is not this one's.
    let mut other = Browser::new(&app.base);
    other.sign_in(ADMIN_TOKEN).await;
    let theirs = other.csrf().await;
    let page = b
        .post(
            "/rules/apply",
            &[("csrf", &theirs), ("rules", &doc), ("message", "theirs")],
        )
        .await;
    assert_eq!(page.status, 403);
    // No cookie at all: to the sign-in page, nothing done.
    let mut anonymous = Browser::new(&app.base);
    let page = anonymous
        .post(
            "/rules/apply",
            &[("csrf", &theirs), ("rules", &doc), ("message", "x")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert!(page.location.unwrap_or_default().starts_with("/signin"));
    let mut api = TestApp::get(&app, "/v1/rules").await;
    assert_eq!(api.status, 401);
    let mut admin = app;
    admin.token = Some(ADMIN_TOKEN.into());
    api = admin.get("/v1/rules").await;
    assert_eq!(api.status, 404, "nothing applied: {}", api.text);
    // With its own token the change goes through.
    let csrf = b.csrf().await;
    let page = b
        .post(
            "/rules/apply",
            &[
                ("csrf", &csrf),
                ("rules", &doc),
                ("message", "safety first"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert_eq!(page.location.as_deref(), Some("/rules?applied=1&changed=0"));
    let active = admin.get("/v1/rules").await.expect(200).body;
    assert_eq!(active["message"], "safety first");
    assert_eq!(active["author"], "ops");
    admin.stop().await;
}

#[tokio::test]
async fn on_loopback_without_tokens_the_console_is_open_as_the_api_is() {
    let app = TestApp::sqlite().await;
    let mut b = Browser::new(&app.base);
    let page = b.get("/").await;
    assert_eq!(page.status, 303);
    let page = b.get("/signin?next=%2Frules").await;
    assert_eq!(page.status, 303, "no form to fill in");
    assert_eq!(page.location.as_deref(), Some("/rules"));
    let page = b.get("/rules").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("anonymous · admin"));
    assert!(page.text.contains("Preview the impact"));
    app.stop().await;
}

#[tokio::test]
async fn invalid_rules_are_shown_at_their_fields_and_change_nothing() {
    let app = TestApp::sqlite().await;
    let mut b = Browser::new(&app.base);
    b.get("/signin").await;
    let csrf = b.csrf().await;
    let doc = json!({"defaults": {"percent": 180}, "channels": {"nowhere": {"safety_stock": 1}}})
        .to_string();
    let page = b
        .post("/rules/preview", &[("csrf", &csrf), ("rules", &doc)])
        .await;
    assert_eq!(page.status, 422, "{}", page.text);
    assert!(
        page.text.contains("data-field=\"defaults.percent\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("Nothing was changed"));
    let page = b
        .post("/rules/preview", &[("csrf", &csrf), ("rules", "{not json")])
        .await;
    assert_eq!(page.status, 422);
    assert!(page.text.contains("malformed_json"));
    let page = b
        .post(
            "/rules/apply",
            &[("csrf", &csrf), ("rules", "{}"), ("message", " ")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(page.text.contains("data-field=\"message\""));
    assert_eq!(app.get("/v1/rules").await.status, 404);
    app.stop().await;
}

async fn search_finds_by_sku_prefix_gtin_and_title(app: TestApp) {
    for (sku, title, gtin) in [
        ("MUG-BLUE-1", "Blue mug", "4006381333931"),
        ("MUG-RED-1", "Red mug 100% <ceramic>", "5901234123457"),
        ("TEE-S", "T-shirt small", "96385074"),
    ] {
        app.put(
            &format!("/v1/variants/{sku}"),
            json!({"title": title, "gtin": gtin}),
        )
        .await
        .expect(200);
    }
    let mut b = Browser::new(&app.base);
    b.get("/signin").await;
    let found = |text: &str| -> Vec<String> {
        text.split("<a href=\"/stock/")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect()
    };
    for (query, expect) in [
        ("MUG", vec!["MUG-BLUE-1", "MUG-RED-1"]),
        ("mug-r", vec!["MUG-RED-1"]),
        ("4006381333931", vec!["MUG-BLUE-1"]),
        ("t-shirt", vec!["TEE-S"]),
        ("100%", vec!["MUG-RED-1"]),
        ("_", vec![]),
        ("nothing", vec![]),
        // Three characters or more: anywhere in the title, any case (trigram index).
        ("SMALL", vec!["TEE-S"]),
        ("<cer", vec!["MUG-RED-1"]),
        ("\"mug", vec![]),
        // Shorter: the start of a title.
        ("bl", vec!["MUG-BLUE-1"]),
        ("ug", vec![]),
    ] {
        let page = b
            .get(&format!("/stock?fragment=1&q={}", urlencode(query)))
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(found(&page.text), expect, "query {query:?}: {}", page.text);
    }
    let page = b.get("/stock?q=red").await;
    assert!(
        page.text.contains("Red mug 100% &lt;ceramic&gt;"),
        "escaped: {}",
        page.text
    );
    // A renamed variant is found by its new title only (the index follows).
    app.put("/v1/variants/MUG-BLUE-1", json!({"title": "Navy beaker"}))
        .await
        .expect(200);
    for (query, expect) in [("navy", vec!["MUG-BLUE-1"]), ("blue mug", vec![])] {
        let page = b
            .get(&format!("/stock?fragment=1&q={}", urlencode(query)))
            .await;
        assert_eq!(found(&page.text), expect, "query {query:?}: {}", page.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn search_on_sqlite() {
    search_finds_by_sku_prefix_gtin_and_title(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn search_on_postgres() {
    let Some(app) = TestApp::postgres("console_search").await else {
        return;
    };
    search_finds_by_sku_prefix_gtin_and_title(app).await;
}

// ---------------------------------------------------------------------------
// The browser.

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A tiny WebDriver client: one chromedriver process, one session.
struct WebDriver {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: tempfile::TempDir,
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl WebDriver {
    /// Starts chromedriver and a headless Chromium; `None` (skipped loudly)
    /// when chromedriver is not installed and not required.
    async fn start() -> Option<WebDriver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            let required = std::env::var("STOCKD_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(
                !required,
                "{CHROMEDRIVER} is missing and STOCKD_REQUIRE_SERVICES=1"
            );
            eprintln!("SKIPPED: browser test: {CHROMEDRIVER} is missing (install chromium and chromium-driver)");
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut wd = WebDriver {
            driver,
            http: reqwest::Client::new(),
            session: String::new(),
            base: format!("http://127.0.0.1:{port}"),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = wd
                .http
                .get(format!("{}/status", wd.base))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=390,844".into(),
            format!("--user-data-dir={}", wd._profile.path().display()),
        ];
        let created = wd
            .raw(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
                }}})),
            )
            .await;
        wd.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Some(wd)
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("webdriver request");
        let value: Value = response.json().await.expect("webdriver answer");
        value["value"].clone()
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let value = self.raw(method, &path, body).await;
        if let Some(error) = value.get("error") {
            panic!("webdriver {path}: {error}: {}", value["message"]);
        }
        value
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The first element matching `css`, waiting up to `within`.
    async fn find(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let path = format!("/session/{}/element", self.session);
            let found = self
                .raw(
                    reqwest::Method::POST,
                    &path,
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element {css}: {found}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The rendered text of the first element matching `css`, read in one
    /// script call (the overview replaces its live part every few seconds,
    /// so a found element may be gone by the next command).
    async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/session/{}/execute/sync", self.session);
            let value = self
                .raw(
                    reqwest::Method::POST,
                    &path,
                    Some(json!({
                        "script": "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                        "args": [css]
                    })),
                )
                .await;
            if let Some(text) = value.as_str() {
                return text.trim().to_string();
            }
            assert!(Instant::now() < deadline, "no element {css}: {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`, finding it again if the page
    /// replaced it in between.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let id = self.find(css, Duration::from_secs(10)).await;
            let path = format!("/session/{}/element/{id}/click", self.session);
            let value = self
                .raw(reqwest::Method::POST, &path, Some(json!({})))
                .await;
            match value.get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") if Instant::now() < deadline => continue,
                Some(error) => panic!("click {css}: {error}: {}", value["message"]),
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css, Duration::from_secs(10)).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits until the text of `css` contains `expect`.
    async fn wait_text(&self, css: &str, expect: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text(css).await;
            if text.contains(expect) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {expect:?}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}

const WOO: &str = "woo";
const WOO_KEY: &str = "ck_console_0123456789";
const WOO_SECRET: &str = "cs_console_0123456789";

/// A server with tokens, one WooCommerce simulator that refuses `BAD-1`
/// for good, and two listed variants with stock.
async fn shop_with_a_dead_letter() -> (TestApp, RunningSim) {
    let woo = stockd_sim::woocommerce::start(
        stockd_sim::woocommerce::Config {
            consumer_key: WOO_KEY.into(),
            consumer_secret: WOO_SECRET.into(),
            webhook_secret: "hook".into(),
            ..Default::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("woocommerce simulator");
    woo.set_faults(Faults {
        reject_skus: vec!["BAD-1".into()],
        ..Default::default()
    });
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(5)).expect("http client"));
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(sqlite_url(&dir));
    cfg.tokens = vec![
        token("ops", Role::Admin, ADMIN_TOKEN),
        token("viewer", Role::Read, READ_TOKEN),
    ];
    cfg.retry.base = Duration::from_millis(50);
    cfg.retry.cap = Duration::from_millis(200);
    cfg.retry.max_attempts = 3;
    cfg.extra_connections = vec![stockd::outbound::dispatch::Connection {
        channel: ChannelId::parse(WOO.to_string()).expect("id"),
        connector: Arc::new(woocommerce::WooCommerce::new(
            woocommerce::Config {
                site_url: woo.base_url.clone(),
                consumer_key: WOO_KEY.into(),
                consumer_secret: WOO_SECRET.into(),
                webhook_secret: "hook".into(),
                rate_limit: None,
                ..Default::default()
            },
            transport,
        )),
    }];
    let mut app = TestApp::start(cfg, dir).await;
    app.token = Some(ADMIN_TOKEN.into());
    app.location("AMS", true, 1).await;
    app.put("/v1/variants/GOOD-1", json!({"title": "Blue enamel mug"}))
        .await
        .expect(200);
    app.put("/v1/variants/BAD-1", json!({"title": "Broken listing"}))
        .await
        .expect(200);
    app.put(
        &format!("/v1/channels/{WOO}"),
        json!({"kind": "woocommerce"}),
    )
    .await
    .expect(200);
    let listings: Vec<Value> = woo
        .add_listings(&[("GOOD-1".to_string(), 0), ("BAD-1".to_string(), 0)])
        .into_iter()
        .map(|l| json!({"sku": l.sku, "external": l.external}))
        .collect();
    app.post(
        &format!("/v1/channels/{WOO}/listings"),
        Value::Array(listings),
    )
    .await
    .expect(200);
    app.events(json!([
        receipt("r1", "GOOD-1", "AMS", 5),
        receipt("r2", "BAD-1", "AMS", 4)
    ]))
    .await;
    (app, woo)
}

#[tokio::test]
async fn in_a_browser_sign_in_find_explain_change_a_rule_retry_and_watch_the_charts() {
    let Some(wd) = WebDriver::start().await else {
        return;
    };
    let (app, _woo) = shop_with_a_dead_letter().await;
    let base = app.base.clone();

    // Sign in: the console sends a stranger to the sign-in form.
    wd.goto(&format!("{base}/")).await;
    assert!(wd.url().await.contains("/signin"), "{}", wd.url().await);
    wd.type_into("#token", ADMIN_TOKEN).await;
    wd.click("form.signin button").await;
    wd.wait_text("h1", "Overview", Duration::from_secs(10))
        .await;
    assert_eq!(wd.text("#who").await, "ops · admin");

    // A KPI chart renders with data: the latency chart gets a line once the
    // channel acknowledges GOOD-1 and the page refreshes itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = wd
            .script("return document.querySelectorAll('#chart-latency polyline').length")
            .await;
        let points = wd
            .script("var c = document.getElementById('chart-events'); return c ? parseInt(c.getAttribute('data-points'), 10) : 0")
            .await;
        if lines.as_u64().unwrap_or(0) >= 1 && points.as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the charts never got data");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let legend = wd.text("#chart-latency .legend").await;
    assert!(legend.contains(WOO), "{legend}");
    let health = wd.text("#health").await;
    assert!(health.contains(WOO), "{health}");

    // Find a SKU by its title, typing as a person would, and open it.
    wd.click("nav a[href='/stock']").await;
    wd.type_into("#q", "enamel").await;
    wd.wait_text("#results", "GOOD-1", Duration::from_secs(10))
        .await;
    wd.click("#results a").await;
    wd.wait_text("h1", "GOOD-1", Duration::from_secs(10)).await;
    let trail = wd.text("section[data-channel='woo'] .explain").await;
    assert!(trail.contains("Pool 5"), "{trail}");
    assert!(trail.contains("AMS 5 on hand − 0 reserved = 5"), "{trail}");
    assert_eq!(wd.text("section[data-channel='woo'] .qty").await, "5");

    // Change a rule: preview shows from → to, apply with a message.
    wd.click("nav a[href='/rules']").await;
    wd.wait_text(
        "#active-version",
        "No rules applied yet",
        Duration::from_secs(10),
    )
    .await;
    wd.type_into("#rules", r#"{"channels": {"woo": {"safety_stock": 2}}}"#)
        .await;
    wd.click("#preview-button").await;
    let summary = wd
        .wait_text(
            "#preview-summary",
            "listings change",
            Duration::from_secs(10),
        )
        .await;
    assert!(summary.contains("2 of 2 listings change"), "{summary}");
    let rows = wd
        .script(
            "return Array.from(document.querySelectorAll('#preview-changes tbody tr'))\
             .map(function (r) { return Array.from(r.cells).map(function (c) { return c.textContent.trim(); }).join('|'); })",
        )
        .await;
    let rows: Vec<&str> = rows
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(rows, vec!["woo|BAD-1|4|2 ↓", "woo|GOOD-1|5|3 ↓"]);
    wd.type_into("#apply-message", "Keep two back on Woo before the sale")
        .await;
    wd.click("#apply").await;
    wd.wait_text(
        ".flash",
        "Version 1 is active; 2 listings change.",
        Duration::from_secs(10),
    )
    .await;
    assert!(wd
        .text("#versions")
        .await
        .contains("Keep two back on Woo before the sale"));

    // The explain trail now names the rule and where it came from.
    wd.goto(&format!("{base}/stock/GOOD-1")).await;
    let trail = wd.text("section[data-channel='woo'] .explain").await;
    assert!(
        trail.contains("safety stock 2 from channels.woo: 5 → 3"),
        "{trail}"
    );
    assert_eq!(wd.text("section[data-channel='woo'] .qty").await, "3");

    // Retry a dead letter: BAD-1 lands in the queue; the button requeues it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        wd.goto(&format!("{base}/channels")).await;
        let dlq = wd.text("#dlq").await;
        if dlq.contains("BAD-1") {
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter shown: {dlq}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let letter = wd
        .script("return document.querySelector('#dlq tr[data-letter]').getAttribute('data-letter')")
        .await;
    let letter: i64 = letter
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a letter id");
    wd.click("#dlq tr[data-letter] form[action$='/retry'] button")
        .await;
    let flash = wd
        .wait_text(".flash", "queued again", Duration::from_secs(10))
        .await;
    assert_eq!(
        flash,
        format!("Dead letter {letter} queued again: its listing's latest state will be pushed.")
    );
    // The letter left the queue (the channel may refuse the push again and
    // write a new one).
    let dlq = app.get("/v1/dlq").await.expect(200).body;
    let ids: Vec<i64> = dlq["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["id"].as_i64()).collect())
        .unwrap_or_default();
    assert!(!ids.contains(&letter), "{dlq}");

    wd.quit().await;
    app.stop().await;
}

/// Every page over a small catalog with lagging listings (no channel is
/// connected), a kit, a rules version and a quarantined event — which
/// exercises each of the store's console reads — then discarding the
/// quarantined event from its page.
async fn every_page_renders_and_quarantine_discards(mut app: TestApp) {
    app.location("AMS", true, 1).await;
    for (sku, title) in [
        ("MUG-1", "Mug"),
        ("LID-1", "Lid"),
        ("SET-1", "Mug with lid"),
    ] {
        app.put(&format!("/v1/variants/{sku}"), json!({"title": title}))
            .await
            .expect(200);
    }
    app.put(
        "/v1/bundles/SET-1",
        json!({"components": [{"sku": "MUG-1", "qty": 1}, {"sku": "LID-1", "qty": 1}]}),
    )
    .await
    .expect(200);
    app.put("/v1/channels/bol", json!({"kind": "bol"}))
        .await
        .expect(200);
    app.post(
        "/v1/channels/bol/listings",
        json!([{"sku": "MUG-1"}, {"sku": "SET-1"}]),
    )
    .await
    .expect(200);
    app.put(
        "/v1/rules",
        json!({"rules": {"channels": {"bol": {"safety_stock": 1}}}, "message": "bol keeps one"}),
    )
    .await
    .expect(200);
    app.events(json!([
        receipt("r1", "MUG-1", "AMS", 6),
        receipt("r2", "LID-1", "AMS", 2),
        receipt("r3", "GHOST-1", "AMS", 1),
        {"key": "ret1", "type": "return_received", "rma_id": "RMA-7", "sku": "MUG-1", "location": "AMS", "qty": 2}
    ]))
    .await;
    let mut b = Browser::new(&app.base);
    b.get("/signin").await;
    for (path, expect) in [
        ("/", "id=\"kpi-oversell\""),
        ("/", "id=\"chart-daily-pushes\""),
        ("/", "data-stream=\"/overview/stream\""),
        ("/returns", "RMA-7"),
        ("/stock/MUG-1", "<table id=\"sku-returns\">"),
        ("/stock/MUG-1", "Nothing pushed yet."),
        ("/stock/LID-1", "No open returns of this SKU."),
        (
            "/channels/bol?filter=drifting",
            "No completed reconciliation yet",
        ),
        ("/channels/bol", "No reconciliation runs yet."),
        ("/inbound", "No rejected messages."),
        ("/", "id=\"chart-latency\""),
        ("/overview/live", "<table id=\"health\">"),
        ("/stock?q=mug", "MUG-1"),
        (
            "/stock/MUG-1",
            "1 in each <a href=\"/stock/SET-1\">SET-1</a>",
        ),
        ("/stock/SET-1", "Kit pool 2"),
        ("/channels", "No dead letters."),
        ("/channels/bol", "MUG-1"),
        ("/channels/bol?filter=all", "SET-1"),
        ("/channels/bol?filter=budget", "Nothing here."),
        ("/channels/bol?filter=dead", "Nothing here."),
        ("/rules", "bol keeps one"),
        ("/rules/diff?from=0&to=1", "channels.bol.safety_stock"),
        ("/quarantine", "GHOST-1"),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert!(
            page.text.contains(expect),
            "{path} lacks {expect:?}: {}",
            page.text
        );
    }
    let overview = b.get("/overview/live").await.text;
    assert!(
        overview.contains("<td class=\"num\">2</td><td>"),
        "two lagging listings: {overview}"
    );
    let returns = b.get("/returns").await.text;
    assert!(
        returns.contains("<td>RMA-7</td><td><a href=\"/stock/MUG-1\">MUG-1</a></td><td>AMS</td><td class=\"num\">2</td><td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">2</td>"),
        "{returns}"
    );
    let sku_page = b.get("/stock/MUG-1").await.text;
    assert!(sku_page.contains("RMA-7"), "{sku_page}");
    assert_eq!(b.get("/reconciliations/999").await.status, 404);
    assert!(sku_page.contains("update pending"), "{sku_page}");
    assert!(sku_page.contains("receipt"), "{sku_page}");
    assert_eq!(b.get("/stock/NOPE").await.status, 404);
    assert_eq!(b.get("/channels/nope").await.status, 404);

    let quarantined = {
        app.token = None;
        app.get("/v1/quarantine").await.expect(200).body["items"][0]["id"]
            .as_i64()
            .expect("a quarantined event")
    };
    let csrf = b.csrf().await;
    let page = b
        .post(
            &format!("/quarantine/{quarantined}/discard"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 303);
    let page = b
        .get(page.location.as_deref().unwrap_or("/quarantine"))
        .await;
    assert!(
        page.text.contains("discarded; its key is free again"),
        "{}",
        page.text
    );
    assert!(page.text.contains("The quarantine is empty."));
    app.stop().await;
}

#[tokio::test]
async fn every_page_renders_on_sqlite() {
    every_page_renders_and_quarantine_discards(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn every_page_renders_on_postgres() {
    let Some(app) = TestApp::postgres("console_pages").await else {
        return;
    };
    every_page_renders_and_quarantine_discards(app).await;
}

#[tokio::test]
async fn rules_apply_then_roll_back_with_a_diff_between_versions() {
    let app = TestApp::sqlite().await;
    let mut b = Browser::new(&app.base);
    b.get("/signin").await;
    let csrf = b.csrf().await;
    for (doc, message) in [
        (json!({"defaults": {"safety_stock": 1}}), "one back"),
        (json!({"defaults": {"safety_stock": 4}}), "four back"),
    ] {
        let page = b
            .post(
                "/rules/apply",
                &[
                    ("csrf", &csrf),
                    ("rules", &doc.to_string()),
                    ("message", message),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{}", page.text);
    }
    let diff = b.get("/rules/diff?from=1&to=2").await;
    assert_eq!(diff.status, 200);
    assert!(
        diff.text.contains("<code>defaults.safety_stock</code></td><td class=\"from\">1</td><td class=\"to\">4</td>"),
        "{}",
        diff.text
    );
    let rules = b.get("/rules").await.text;
    assert!(
        rules.contains("action=\"/rules/rollback\""),
        "an older version can be rolled back to"
    );
    let page = b
        .post(
            "/rules/rollback",
            &[
                ("csrf", &csrf),
                ("version", "1"),
                ("message", "too cautious"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert_eq!(page.location.as_deref(), Some("/rules?applied=3&changed=0"));
    let active = app.get("/v1/rules").await.expect(200).body;
    assert_eq!(active["version"], 3);
    assert_eq!(active["rules"]["defaults"]["safety_stock"], 1);
    assert_eq!(active["message"], "too cautious");
    let page = b
        .post(
            "/rules/rollback",
            &[("csrf", &csrf), ("version", "9"), ("message", "nowhere")],
        )
        .await;
    assert_eq!(page.status, 404);
    assert_eq!(b.get("/rules/diff?from=1&to=9").await.status, 404);
    app.stop().await;
}

#[tokio::test]
async fn the_overview_streams_its_live_figures_as_server_sent_events() {
    let app = with_tokens().await;
    let mut b = Browser::new(&app.base);
    b.sign_in(READ_TOKEN).await;
    let response = b
        .client
        .get(format!("{}/overview/stream", app.base))
        .header("cookie", b.cookie.clone().expect("a session"))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    // The first event comes at once: the live section as HTML.
    let mut response = response;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("</table>") {
        assert!(Instant::now() < deadline, "no live event: {text}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event in time")
            .expect("a chunk")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: live\n"), "{text}");
    assert!(text.contains("data: "), "{text}");
    assert!(text.contains("<table id=\"health\">"), "{text}");
    // Without a session the stream is refused (the browser's EventSource
    // then gives up).
    let mut stranger = Browser::new(&app.base);
    let page = stranger.get("/overview/stream").await;
    assert_eq!(page.status, 303);
    // An open stream does not hold up the shutdown.
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops with a stream open");
    drop(response);
}

#[tokio::test]
async fn in_a_browser_daily_kpis_a_reconciliation_and_a_skus_push_history() {
    let Some(wd) = WebDriver::start().await else {
        return;
    };
    let (app, _woo) = shop_with_a_dead_letter().await;
    let base = app.base.clone();
    wd.goto(&format!("{base}/")).await;
    wd.type_into("#token", ADMIN_TOKEN).await;
    wd.click("form.signin button").await;
    wd.wait_text("h1", "Overview", Duration::from_secs(10))
        .await;

    // The live section is pushed by the server (server-sent events).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let updated = wd
            .script("return document.getElementById('live').getAttribute('data-updated')")
            .await;
        if updated.is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "no live event reached the page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A daily KPI chart renders with data once the pushes are recorded:
    // today's point for the channel, and the KPI cards judge latency.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        wd.goto(&format!("{base}/")).await;
        let points = wd
            .script("return document.querySelectorAll('#chart-daily-pushes circle').length")
            .await;
        if points.as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the daily chart never got data");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let legend = wd.text("#chart-daily-pushes .legend").await;
    assert!(legend.contains(WOO), "{legend}");
    let latency = wd.text("#kpi-latency").await;
    assert!(latency.contains("target < 5.0 s · pass"), "{latency}");

    // Start a reconciliation from the channel's page and see its run.
    wd.goto(&format!("{base}/channels/{WOO}")).await;
    wd.wait_text(
        "#runs",
        "No reconciliation runs yet.",
        Duration::from_secs(10),
    )
    .await;
    wd.click("form[action$='/reconcile'] button").await;
    let flash = wd
        .wait_text(".flash", "started", Duration::from_secs(10))
        .await;
    assert!(flash.starts_with("Reconciliation run "), "{flash}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = wd.text("#runs").await;
        if runs.contains("completed") {
            assert!(runs.contains("console"), "{runs}");
            break;
        }
        assert!(Instant::now() < deadline, "the run never completed: {runs}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        wd.goto(&format!("{base}/channels/{WOO}")).await;
    }
    wd.click("#runs tr[data-run] a").await;
    wd.wait_text("h1", "Reconciliation run", Duration::from_secs(10))
        .await;
    let summary = wd.text("#runs").await;
    assert!(
        summary.contains("2 / 2"),
        "both listings checked: {summary}"
    );

    // The SKU page shows its push history: what was sent, and the answer.
    wd.goto(&format!("{base}/stock/GOOD-1")).await;
    let pushes = wd.text("#pushes").await;
    assert!(pushes.contains(WOO), "{pushes}");
    assert!(pushes.contains("5 (in stock)"), "{pushes}");
    assert!(pushes.contains("applied"), "{pushes}");

    wd.quit().await;
    app.stop().await;
}
