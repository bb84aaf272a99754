//! Amazon SP-API connector against an in-memory transport playing Amazon
//! (channel notes §2), on paused time.

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::amazon::{Amazon, Config};
use stockd_channels::{
    Availability, ChannelError, Connector, ErrorClass, External, HttpRequest, HttpResponse,
    ItemOutcome, LevelQuery, OrderChangeKind, OrderLineRef, PushItem, Transport, WebhookAction,
    WebhookError,
};
use tokio::time::Instant;

const API: &str = "https://sp.test";
const LWA: &str = "https://sp.test/auth/o2/token";
const SELLER: &str = "A2SELLER";
const MARKET: &str = "A1805IZSGTT6HS";
const SECRET: &str = "notify-secret";

type Handler = dyn Fn(&HttpRequest, usize) -> Result<HttpResponse, ChannelError> + Send + Sync;

/// Answers from a closure (given the request and its 0-based number among
/// non-token requests), serves LWA tokens `Atza|1`, `Atza|2`, … and records
/// every request with the moment it left.
struct Fake {
    handler: Box<Handler>,
    log: Mutex<Vec<(Instant, HttpRequest)>>,
    tokens_issued: Mutex<u32>,
    expires_in: u64,
}

impl Fake {
    fn new(
        handler: impl Fn(&HttpRequest, usize) -> Result<HttpResponse, ChannelError>
            + Send
            + Sync
            + 'static,
    ) -> Arc<Fake> {
        Fake::with_expiry(3600, handler)
    }

    fn with_expiry(
        expires_in: u64,
        handler: impl Fn(&HttpRequest, usize) -> Result<HttpResponse, ChannelError>
            + Send
            + Sync
            + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            handler: Box::new(handler),
            log: Mutex::new(Vec::new()),
            tokens_issued: Mutex::new(0),
            expires_in,
        })
    }

    fn requests(&self) -> Vec<(Instant, HttpRequest)> {
        self.log.lock().expect("log").clone()
    }

    /// Requests other than token requests.
    fn api_requests(&self) -> Vec<(Instant, HttpRequest)> {
        self.requests()
            .into_iter()
            .filter(|(_, r)| r.url != LWA)
            .collect()
    }

    fn token_requests(&self) -> Vec<HttpRequest> {
        self.requests()
            .into_iter()
            .filter(|(_, r)| r.url == LWA)
            .map(|(_, r)| r)
            .collect()
    }
}

#[async_trait]
impl Transport for Fake {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let n = {
            let mut log = self.log.lock().expect("log");
            log.push((Instant::now(), request.clone()));
            log.iter().filter(|(_, r)| r.url != LWA).count()
        };
        if request.url == LWA {
            let mut issued = self.tokens_issued.lock().expect("tokens");
            *issued += 1;
            return Ok(response(
                200,
                &[],
                &json!({"access_token": format!("Atza|{}", *issued), "token_type": "bearer",
                        "expires_in": self.expires_in, "refresh_token": "Atzr|r"}),
            ));
        }
        (self.handler)(&request, n - 1)
    }
}

fn response(status: u16, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    raw_response(status, headers, body.to_string().into_bytes())
}

fn raw_response(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> HttpResponse {
    let mut map = http::HeaderMap::new();
    map.insert("x-amzn-requestid", http::HeaderValue::from_static("req-1"));
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    HttpResponse {
        status,
        headers: map,
        body,
    }
}

fn config() -> Config {
    Config {
        endpoint: API.to_owned(),
        lwa_url: LWA.to_owned(),
        client_id: "amzn1.application-oa2-client.abc".to_owned(),
        client_secret: "cs&=secret".to_owned(),
        refresh_token: "Atzr|IwEB+xyz".to_owned(),
        seller_id: SELLER.to_owned(),
        marketplace_id: MARKET.to_owned(),
        notification_secret: SECRET.to_owned(),
        ..Config::default()
    }
}

fn external(sku: &str) -> External {
    json!({"seller_sku": sku, "marketplace_id": MARKET, "product_type": "PRODUCT"})
        .as_object()
        .cloned()
        .expect("object")
}

fn item(sku: &str, quantity: i64) -> PushItem {
    PushItem {
        sku: format!("stockd-{sku}"),
        external: external(sku),
        quantity,
        availability: if quantity > 0 {
            Availability::InStock
        } else {
            Availability::OutOfStock
        },
        eta: None,
        believed: None,
        idempotency_key: format!("key-{sku}-{quantity}"),
        reference: "stockd://ledger/1".to_owned(),
    }
}

fn accepted(sku: &str) -> HttpResponse {
    response(
        200,
        &[("x-amzn-RateLimit-Limit", "5.0")],
        &json!({"sku": sku, "status": "ACCEPTED", "submissionId": "f1dc2914-75dd-11ea-bc55-0242ac130003", "issues": []}),
    )
}

fn body_json(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The decoded query parameters of a URL.
fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf8")
}

fn param(url: &str, name: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn path(url: &str) -> &str {
    let rest = url.strip_prefix(API).unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

// ---------------------------------------------------------------------------
// A small JSON-schema checker (required / type / enum / const / bounds /
// items / properties / oneOf / false schemas / local $ref), enough for the
// official Amazon schemas read from the spec files.

fn spec(name: &str) -> Value {
    let file = format!("{}/../../specs/amazon/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("spec file {file} missing or unreadable: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("spec file {file} is not JSON: {e}"))
}

fn check(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{at}: not allowed"));
            return;
        }
        _ => {}
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        let target = root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("unresolved $ref {reference}"));
        check(root, target, value, at, errors);
        return;
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let ok = allowed.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: expected type {allowed:?}, got {value}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{at}: {value} not in enum {options:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            errors.push(format!("{at}: {value} is not {constant}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            errors.push(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n > max {
            errors.push(format!("{at}: {n} > maximum {max}"));
        }
    }
    if let (Some(min), Some(s)) = (
        schema.get("minLength").and_then(Value::as_u64),
        value.as_str(),
    ) {
        if (s.chars().count() as u64) < min {
            errors.push(format!("{at}: shorter than {min}"));
        }
    }
    if let Some(object) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(key) {
                errors.push(format!("{at}: missing required `{key}`"));
            }
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
            if (object.len() as u64) < min {
                errors.push(format!("{at}: fewer than {min} properties"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, sub) in properties {
                if let Some(v) = object.get(key) {
                    check(root, sub, v, &format!("{at}/{key}"), errors);
                }
            }
        }
    }
    if let Some(array) = value.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (array.len() as u64) < min {
                errors.push(format!("{at}: fewer than {min} items"));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if (array.len() as u64) > max {
                errors.push(format!("{at}: more than {max} items"));
            }
        }
        if let Some(items) = schema.get("items") {
            for (i, v) in array.iter().enumerate() {
                check(root, items, v, &format!("{at}/{i}"), errors);
            }
        }
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = branches
            .iter()
            .filter(|b| {
                let mut e = Vec::new();
                check(root, b, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} oneOf branches, not 1"));
        }
    }
}

fn assert_valid(root: &Value, schema: &Value, value: &Value) {
    let mut errors = Vec::new();
    check(root, schema, value, "", &mut errors);
    assert!(
        errors.is_empty(),
        "schema violations: {errors:#?}\nin {value}"
    );
}

#[test]
fn the_checker_rejects_what_the_schemas_forbid() {
    let listings = spec("listingsItems_2021-08-01.json");
    let patch = &listings["definitions"]["ListingsItemPatchRequest"];
    let mut errors = Vec::new();
    check(
        &listings,
        patch,
        &json!({"productType": "PRODUCT", "patches": [{"op": "set", "path": "/a"}]}),
        "",
        &mut errors,
    );
    assert!(
        errors.iter().any(|e| e.contains("not in enum")),
        "{errors:?}"
    );
    errors.clear();
    check(&listings, patch, &json!({"patches": []}), "", &mut errors);
    assert_eq!(errors.len(), 2, "{errors:?}");

    let feed = spec("listings-feed-schema-v2.json");
    errors.clear();
    check(
        &feed,
        &feed,
        &json!({"header": {"sellerId": "A", "version": "2.0"},
                "messages": [{"messageId": 1, "sku": "S", "operationType": "PATCH", "productType": "P",
                              "attributes": {"x": 1}, "patches": [{"op": "merge", "path": "/attributes/x"}]}]}),
        "",
        &mut errors,
    );
    assert!(errors.iter().any(|e| e.contains("oneOf")), "{errors:?}");
}

// ---------------------------------------------------------------------------
// Auth (§2.1)

#[tokio::test(start_paused = true)]
async fn lwa_token_is_fetched_once_cached_and_sent_on_every_call() {
    let fake = Fake::new(|req, _| Ok(accepted(path(&req.url))));
    let amazon = Amazon::new(config(), fake.clone());
    let items = vec![item("A-1", 3), item("B-2", 0), item("C-3", 7)];
    let outcomes = amazon.push(&items).await.expect("push");
    assert_eq!(
        outcomes,
        vec![
            ItemOutcome::Applied { quantity: 3 },
            ItemOutcome::Applied { quantity: 0 },
            ItemOutcome::Applied { quantity: 7 }
        ]
    );

    let tokens = fake.token_requests();
    assert_eq!(tokens.len(), 1, "one token exchange for three calls");
    let token = &tokens[0];
    assert_eq!(token.method, http::Method::POST);
    assert!(header(token, "content-type")
        .expect("content type")
        .starts_with("application/x-www-form-urlencoded"));
    let form = query(&format!(
        "?{}",
        String::from_utf8(token.body.clone()).expect("utf8")
    ));
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("refresh_token"));
    assert_eq!(get("refresh_token"), Some("Atzr|IwEB+xyz"));
    assert_eq!(get("client_id"), Some("amzn1.application-oa2-client.abc"));
    assert_eq!(get("client_secret"), Some("cs&=secret"));

    let calls = fake.api_requests();
    assert_eq!(calls.len(), 3);
    for (_, call) in &calls {
        assert_eq!(header(call, "x-amz-access-token"), Some("Atza|1"));
        assert!(header(call, "authorization").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn token_is_renewed_before_expiry() {
    let fake = Fake::with_expiry(3600, |req, _| Ok(accepted(path(&req.url))));
    let amazon = Amazon::new(config(), fake.clone());
    amazon.push(&[item("A-1", 1)]).await.expect("push");
    tokio::time::advance(Duration::from_secs(3000)).await;
    amazon.push(&[item("A-1", 2)]).await.expect("push");
    assert_eq!(fake.token_requests().len(), 1, "still valid after 50 min");
    // Within the last minute of the hour the token is renewed.
    tokio::time::advance(Duration::from_secs(560)).await;
    amazon.push(&[item("A-1", 3)]).await.expect("push");
    assert_eq!(fake.token_requests().len(), 2);
    let calls = fake.api_requests();
    assert_eq!(header(&calls[2].1, "x-amz-access-token"), Some("Atza|2"));
}

fn unauthorized() -> HttpResponse {
    response(
        403,
        &[],
        &json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.",
                             "details": "The access token you provided has expired."}]}),
    )
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_answer_renews_once() {
    let fake = Fake::new(|req, _| {
        if header(req, "x-amz-access-token") == Some("Atza|1") {
            Ok(unauthorized())
        } else {
            Ok(accepted(path(&req.url)))
        }
    });
    let amazon = Amazon::new(config(), fake.clone());
    let outcomes = amazon.push(&[item("A-1", 4)]).await.expect("push");
    assert_eq!(outcomes, vec![ItemOutcome::Applied { quantity: 4 }]);
    assert_eq!(fake.token_requests().len(), 2);
    assert_eq!(fake.api_requests().len(), 2);

    // Refused again after the renewal: permanent, no third try.
    let fake = Fake::new(|_, _| Ok(unauthorized()));
    let amazon = Amazon::new(config(), fake.clone());
    let error = amazon
        .push(&[item("A-1", 4), item("B-2", 5)])
        .await
        .expect_err("refused");
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(error.code, "Unauthorized");
    assert_eq!(error.status, Some(403));
    assert_eq!(fake.api_requests().len(), 2, "one renewal, then halted");
}

// ---------------------------------------------------------------------------
// patchListingsItem (§2.4)

#[tokio::test(start_paused = true)]
async fn patch_request_follows_the_listings_items_model() {
    let fake = Fake::new(|req, _| Ok(accepted(path(&req.url))));
    let amazon = Amazon::new(config(), fake.clone());
    let mut special = item("TEE/RED 1", 12);
    special
        .external
        .insert("product_type".into(), json!("SHIRT"));
    let outcomes = amazon.push(&[special]).await.expect("push");
    assert_eq!(outcomes, vec![ItemOutcome::Applied { quantity: 12 }]);

    let model = spec("listingsItems_2021-08-01.json");
    let calls = fake.api_requests();
    let (_, call) = &calls[0];
    assert_eq!(call.method, http::Method::PATCH);
    assert_eq!(
        path(&call.url),
        format!("/listings/2021-08-01/items/{SELLER}/TEE%2FRED%201")
    );
    assert_eq!(param(&call.url, "marketplaceIds").as_deref(), Some(MARKET));
    assert_eq!(header(call, "content-type"), Some("application/json"));
    let body = body_json(call);
    assert_valid(
        &model,
        &model["definitions"]["ListingsItemPatchRequest"],
        &body,
    );
    assert_eq!(
        body,
        json!({"productType": "SHIRT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
               "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 12}]}]})
    );
    // Every query parameter is one the operation declares.
    let declared: Vec<String> = model["paths"]["/listings/2021-08-01/items/{sellerId}/{sku}"]
        ["patch"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    for (name, _) in query(&call.url) {
        assert!(
            declared.contains(&name),
            "undeclared query parameter {name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_is_permanent_with_its_issues_and_accepted_is_applied() {
    let fake = Fake::new(|req, _| {
        if req.url.contains("/BAD-1?") {
            Ok(response(
                200,
                &[],
                &json!({"sku": "BAD-1", "status": "INVALID", "submissionId": "a1c562c2", "identifiers": [],
                        "issues": [{"code": "90000900", "message": "The attributes are invalid.", "severity": "ERROR",
                                    "attributeNames": ["fulfillment_availability"], "categories": ["INVALID_ATTRIBUTE"]}]}),
            ))
        } else {
            Ok(accepted("OK-1"))
        }
    });
    let amazon = Amazon::new(config(), fake.clone());
    let outcomes = amazon
        .push(&[item("BAD-1", 1), item("OK-1", 2)])
        .await
        .expect("push");
    assert_eq!(outcomes[1], ItemOutcome::Applied { quantity: 2 });
    let ItemOutcome::Failed(error) = &outcomes[0] else {
        panic!("INVALID must fail: {outcomes:?}");
    };
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(error.code, "90000900");
    assert!(error.message.contains("The attributes are invalid."));
    assert!(error
        .body
        .as_deref()
        .unwrap_or("")
        .contains("INVALID_ATTRIBUTE"));
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retryable_and_bad_requests_permanent() {
    let fake = Fake::new(|req, _| {
        if req.url.contains("/BROKEN?") {
            Ok(response(
                503,
                &[],
                &json!({"errors": [{"code": "ServiceUnavailable", "message": "try later"}]}),
            ))
        } else if req.url.contains("/WRONG?") {
            Ok(response(
                400,
                &[],
                &json!({"errors": [{"code": "BAD_REQUEST", "message": "Invalid input", "details": "Invalid input"}]}),
            ))
        } else {
            Ok(accepted("X"))
        }
    });
    let amazon = Amazon::new(config(), fake.clone());
    let outcomes = amazon
        .push(&[item("BROKEN", 1), item("WRONG", 1), item("FINE", 1)])
        .await
        .expect("push");
    let class = |o: &ItemOutcome| match o {
        ItemOutcome::Failed(e) => Some((e.class, e.code.clone())),
        ItemOutcome::Applied { .. } => None,
    };
    assert_eq!(
        class(&outcomes[0]),
        Some((ErrorClass::Retryable, "ServiceUnavailable".into()))
    );
    assert_eq!(
        class(&outcomes[1]),
        Some((ErrorClass::Permanent, "BAD_REQUEST".into()))
    );
    assert_eq!(class(&outcomes[2]), None);
}

fn quota_exceeded(retry_after: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = retry_after
        .map(|r| ("retry-after", r))
        .into_iter()
        .collect();
    response(
        429,
        &headers,
        &json!({"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource.", "details": ""}]}),
    )
}

#[tokio::test(start_paused = true)]
async fn quota_exceeded_is_rate_limited_and_nothing_leaves_before_retry_after() {
    let fake = Fake::new(|req, n| {
        if n == 0 {
            Ok(quota_exceeded(Some("2")))
        } else {
            Ok(accepted(path(&req.url)))
        }
    });
    let amazon = Amazon::new(config(), fake.clone());
    let start = Instant::now();
    let error = amazon
        .push(&[item("A-1", 1), item("B-2", 2)])
        .await
        .expect_err("throttled");
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.code, "QuotaExceeded");
    assert_eq!(error.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(fake.api_requests().len(), 1, "the rest is not sent");

    let outcomes = amazon.push(&[item("A-1", 1)]).await.expect("push");
    assert_eq!(outcomes, vec![ItemOutcome::Applied { quantity: 1 }]);
    let calls = fake.api_requests();
    assert!(
        calls[1].0 - start >= Duration::from_secs(2),
        "left too early"
    );

    // Without Retry-After (likely on Amazon, §2.3) the connector still waits.
    let fake = Fake::new(|req, n| {
        if n == 0 {
            Ok(quota_exceeded(None))
        } else {
            Ok(accepted(path(&req.url)))
        }
    });
    let amazon = Amazon::new(config(), fake.clone());
    let start = Instant::now();
    let error = amazon.push(&[item("A-1", 1)]).await.expect_err("throttled");
    let wait = error.retry_after.expect("a wait is given");
    assert!(wait >= Duration::from_millis(200));
    amazon.push(&[item("A-1", 1)]).await.expect("push");
    assert!(fake.api_requests()[1].0 - start >= wait);
}

#[tokio::test(start_paused = true)]
async fn patches_are_paced_just_under_five_per_second_with_burst_five() {
    let fake = Fake::new(|req, _| Ok(accepted(path(&req.url))));
    let amazon = Amazon::new(config(), fake.clone());
    let start = Instant::now();
    let items: Vec<PushItem> = (0..15).map(|i| item(&format!("S-{i}"), i)).collect();
    let outcomes = amazon.push(&items).await.expect("push");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, ItemOutcome::Applied { .. })));
    let calls = fake.api_requests();
    assert_eq!(calls.len(), 15);
    for (k, (at, _)) in calls.iter().enumerate() {
        // One token under the burst, 90 % of the rate: the channel's own
        // bucket never sees a request it could not pay for.
        let earliest = Duration::from_millis(200 * (k as u64).saturating_sub(3));
        assert!(
            *at - start + Duration::from_millis(1) >= earliest,
            "call {k} left at {:?}, before {earliest:?}",
            *at - start
        );
    }
    // And not much slower than that: 4 at once, then one per 1/4.5 s.
    assert!(calls[14].0 - start <= Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn the_rate_amazon_reports_replaces_the_published_one() {
    let fake = Fake::new(|req, _| {
        Ok(response(
            200,
            &[("x-amzn-RateLimit-Limit", "1.0")],
            &json!({"sku": path(&req.url), "status": "ACCEPTED", "submissionId": "s"}),
        ))
    });
    let amazon = Amazon::new(config(), fake.clone());
    let items: Vec<PushItem> = (0..8).map(|i| item(&format!("S-{i}"), i)).collect();
    amazon.push(&items).await.expect("push");
    let calls = fake.api_requests();
    // After the burst, one call per second instead of five.
    let gap = calls[7].0 - calls[6].0;
    assert!(gap >= Duration::from_millis(990), "gap {gap:?}");
}

// ---------------------------------------------------------------------------
// read_levels

#[tokio::test(start_paused = true)]
async fn read_levels_returns_the_default_channel_quantity() {
    let fake = Fake::new(|req, _| {
        if req.url.contains("/GONE?") {
            return Ok(response(
                404,
                &[],
                &json!({"errors": [{"code": "NOT_FOUND", "message": "not found"}]}),
            ));
        }
        Ok(response(
            200,
            &[],
            &json!({"sku": "A-1", "fulfillmentAvailability": [
                {"fulfillmentChannelCode": "AMAZON_EU", "quantity": 50},
                {"fulfillmentChannelCode": "DEFAULT", "quantity": 9}]}),
        ))
    });
    let amazon = Amazon::new(config(), fake.clone());
    let levels = amazon
        .read_levels(&[
            LevelQuery {
                sku: "a".into(),
                external: external("A-1"),
            },
            LevelQuery {
                sku: "g".into(),
                external: external("GONE"),
            },
        ])
        .await
        .expect("read");
    let level = levels[0].as_ref().expect("level");
    assert_eq!(level.quantity, Some(9));
    assert_eq!(level.availability, Some(Availability::InStock));
    let error = levels[1].as_ref().expect_err("unknown SKU");
    assert_eq!(error.class, ErrorClass::Permanent);
    let calls = fake.api_requests();
    assert_eq!(calls[0].1.method, http::Method::GET);
    assert_eq!(
        param(&calls[0].1.url, "includedData").as_deref(),
        Some("fulfillmentAvailability")
    );
    assert_eq!(
        param(&calls[0].1.url, "marketplaceIds").as_deref(),
        Some(MARKET)
    );
}

// ---------------------------------------------------------------------------
// JSON_LISTINGS_FEED (§2.5)

#[derive(Default)]
struct FeedState {
    uploaded: Option<Vec<u8>>,
    status_polls: usize,
}

/// Plays the Feeds API: document → upload (foreign host) → feed → statuses
/// from `statuses` (the last repeats) → result document on the SP-API host.
fn feed_fake(
    statuses: &'static [&'static str],
    report: fn(&Value) -> Value,
) -> (Arc<Fake>, Arc<Mutex<FeedState>>) {
    let state = Arc::new(Mutex::new(FeedState::default()));
    let shared = state.clone();
    let fake = Fake::new(move |req, _| {
        let mut state = shared.lock().expect("state");
        let p = path(&req.url).to_owned();
        Ok(match (req.method.as_str(), p.as_str()) {
            ("POST", "/feeds/2021-06-30/documents") => response(
                201,
                &[],
                &json!({"feedDocumentId": "doc-in", "url": "https://s3.test/upload/doc-in?X-Amz-Signature=abc"}),
            ),
            ("PUT", _) if req.url.starts_with("https://s3.test/upload/doc-in") => {
                state.uploaded = Some(req.body.clone());
                raw_response(200, &[], Vec::new())
            }
            ("POST", "/feeds/2021-06-30/feeds") => response(202, &[], &json!({"feedId": "F1"})),
            ("GET", "/feeds/2021-06-30/feeds/F1") => {
                let status = statuses[state.status_polls.min(statuses.len() - 1)];
                state.status_polls += 1;
                let mut feed = json!({"feedId": "F1", "feedType": "JSON_LISTINGS_FEED", "marketplaceIds": [MARKET],
                                      "createdTime": "2026-09-01T10:00:00Z", "processingStatus": status});
                if status == "DONE" || status == "FATAL" {
                    feed["resultFeedDocumentId"] = json!("doc-out");
                }
                response(200, &[], &feed)
            }
            ("GET", "/feeds/2021-06-30/documents/doc-out") => response(
                200,
                &[],
                &json!({"feedDocumentId": "doc-out", "url": format!("{API}/reports/doc-out")}),
            ),
            ("GET", "/reports/doc-out") => {
                let uploaded: Value =
                    serde_json::from_slice(state.uploaded.as_deref().unwrap_or(b"{}"))
                        .unwrap_or(Value::Null);
                response(200, &[], &report(&uploaded))
            }
            _ => response(
                404,
                &[],
                &json!({"errors": [{"code": "NotFound", "message": p}]}),
            ),
        })
    });
    (fake, state)
}

/// Fails message 2 with an ERROR and leaves a WARNING on message 3.
fn report_failing_message_two(document: &Value) -> Value {
    let sku = |id: usize| document["messages"][id - 1]["sku"].clone();
    json!({
        "header": {"sellerId": SELLER, "version": "2.0", "feedId": "F1"},
        "issues": [
            {"messageId": 2, "sku": sku(2), "code": "90220", "severity": "ERROR",
             "message": "'[fulfillment_availability]' is invalid."},
            {"messageId": 3, "sku": sku(3), "code": "18027", "severity": "WARNING", "message": "Check this."}
        ],
        "summary": {"errors": 1, "warnings": 1, "messagesProcessed": 4, "messagesAccepted": 3, "messagesInvalid": 1}
    })
}

fn feed_config() -> Config {
    Config {
        feed_threshold: 3,
        feed_poll_interval: Duration::from_secs(30),
        feed_timeout: Duration::from_secs(600),
        ..config()
    }
}

#[tokio::test(start_paused = true)]
async fn large_pushes_go_through_a_feed_followed_to_its_report() {
    let (fake, state) = feed_fake(
        &["IN_QUEUE", "IN_PROGRESS", "DONE"],
        report_failing_message_two,
    );
    let amazon = Amazon::new(feed_config(), fake.clone());
    let items = vec![
        item("A-1", 1),
        item("B-2", 2),
        item("C-3", 3),
        item("D-4", 0),
    ];
    let start = Instant::now();
    let outcomes = amazon.push(&items).await.expect("push");

    assert_eq!(outcomes[0], ItemOutcome::Applied { quantity: 1 });
    let ItemOutcome::Failed(error) = &outcomes[1] else {
        panic!("message 2 failed in the report: {outcomes:?}");
    };
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(error.code, "90220");
    assert_eq!(
        outcomes[2],
        ItemOutcome::Applied { quantity: 3 },
        "a WARNING does not fail"
    );
    assert_eq!(outcomes[3], ItemOutcome::Applied { quantity: 0 });

    // The uploaded document is a valid listings feed (v2).
    let uploaded = state
        .lock()
        .expect("state")
        .uploaded
        .clone()
        .expect("uploaded");
    let document: Value = serde_json::from_slice(&uploaded).expect("JSON document");
    let schema = spec("listings-feed-schema-v2.json");
    assert_valid(&schema, &schema, &document);
    assert_eq!(document["header"]["sellerId"], SELLER);
    let messages = document["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[1]["messageId"], 2);
    assert_eq!(messages[1]["sku"], "B-2");
    assert_eq!(messages[1]["operationType"], "PATCH");
    assert_eq!(
        messages[1]["patches"][0]["value"][0],
        json!({"fulfillment_channel_code": "DEFAULT", "quantity": 2})
    );
    // The fake's report is itself valid against the report schema.
    let report_schema = spec("listings-feed-processing-report-schema-v2.json");
    assert_valid(
        &report_schema,
        &report_schema,
        &report_failing_message_two(&document),
    );

    let calls = fake.api_requests();
    let feeds_model = spec("feeds_2021-06-30.json");
    let create_document = calls
        .iter()
        .find(|(_, r)| path(&r.url) == "/feeds/2021-06-30/documents")
        .expect("createFeedDocument");
    let spec_body = body_json(&create_document.1);
    assert_valid(
        &feeds_model,
        &feeds_model["definitions"]["CreateFeedDocumentSpecification"],
        &spec_body,
    );
    let content_type = spec_body["contentType"].as_str().expect("contentType");
    let upload = calls
        .iter()
        .find(|(_, r)| r.method == http::Method::PUT)
        .expect("upload");
    assert_eq!(header(&upload.1, "content-type"), Some(content_type));
    assert!(
        header(&upload.1, "x-amz-access-token").is_none(),
        "the token never goes to the storage host"
    );
    let create_feed = calls
        .iter()
        .find(|(_, r)| path(&r.url) == "/feeds/2021-06-30/feeds" && r.method == http::Method::POST)
        .expect("createFeed");
    let feed_body = body_json(&create_feed.1);
    assert_valid(
        &feeds_model,
        &feeds_model["definitions"]["CreateFeedSpecification"],
        &feed_body,
    );
    assert_eq!(
        feed_body,
        json!({"feedType": "JSON_LISTINGS_FEED", "marketplaceIds": [MARKET], "inputFeedDocumentId": "doc-in"})
    );
    // Polled at the configured interval, three times.
    let polls: Vec<Instant> = calls
        .iter()
        .filter(|(_, r)| path(&r.url) == "/feeds/2021-06-30/feeds/F1")
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(polls.len(), 3);
    assert!(polls[1] - polls[0] >= Duration::from_secs(30));
    assert!(Instant::now() - start < Duration::from_secs(600));
    // No patch calls on the bulk path.
    assert!(calls.iter().all(|(_, r)| r.method != http::Method::PATCH));
    for (_, r) in calls.iter().filter(|(_, r)| r.url.starts_with(API)) {
        assert_eq!(header(r, "x-amz-access-token"), Some("Atza|1"), "{}", r.url);
    }
}

/// The size the dispatcher is told (`bulk_on_fast_path_up_to`) is the one
/// where a bulk submission switches from patches to a feed.
#[tokio::test(start_paused = true)]
async fn a_bulk_submission_up_to_the_announced_size_goes_as_patches_beyond_it_as_a_feed() {
    let fake = Fake::new(|req, _| Ok(accepted(path(&req.url))));
    let amazon = Amazon::new(feed_config(), fake.clone());
    let up_to = amazon.bulk_on_fast_path_up_to();
    assert_eq!(up_to, 3, "the feed threshold");
    let patch_calls = |fake: &Fake| {
        fake.api_requests()
            .iter()
            .filter(|(_, r)| r.method == http::Method::PATCH)
            .count()
    };
    let feed_calls = |fake: &Fake| {
        fake.api_requests()
            .iter()
            .filter(|(_, r)| path(&r.url) == "/feeds/2021-06-30/feeds")
            .count()
    };

    let small: Vec<PushItem> = (0..up_to).map(|i| item(&format!("S-{i}"), 1)).collect();
    amazon.submit(&small, true).await.expect("submit");
    assert_eq!(patch_calls(&fake), up_to, "one patch per item");
    assert_eq!(feed_calls(&fake), 0);

    let (fake, _) = feed_fake(&["IN_QUEUE"], report_failing_message_two);
    let amazon = Amazon::new(feed_config(), fake.clone());
    let large: Vec<PushItem> = (0..=up_to).map(|i| item(&format!("L-{i}"), 1)).collect();
    let submitted = amazon.submit(&large, true).await.expect("submit");
    assert_eq!(patch_calls(&fake), 0, "no patch beyond the announced size");
    assert_eq!(feed_calls(&fake), 1);
    assert!(submitted
        .iter()
        .all(|s| matches!(s, stockd_channels::Submitted::Accepted { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_feed_is_retryable_for_every_item() {
    let (fake, _) = feed_fake(&["IN_PROGRESS", "FATAL"], report_failing_message_two);
    let amazon = Amazon::new(feed_config(), fake.clone());
    let items = vec![
        item("A-1", 1),
        item("B-2", 2),
        item("C-3", 3),
        item("D-4", 4),
    ];
    let outcomes = amazon.push(&items).await.expect("push");
    for outcome in &outcomes {
        let ItemOutcome::Failed(error) = outcome else {
            panic!("FATAL must not apply: {outcomes:?}");
        };
        assert_eq!(error.class, ErrorClass::Retryable);
        assert_eq!(error.code, "feed_fatal");
    }
}

#[tokio::test(start_paused = true)]
async fn a_feed_still_running_at_the_bound_is_pending_and_resolved_on_the_next_push() {
    let (fake, state) = feed_fake(
        &["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "DONE"],
        report_failing_message_two,
    );
    let config = Config {
        feed_timeout: Duration::from_secs(70),
        ..feed_config()
    };
    let amazon = Amazon::new(config, fake.clone());
    let items = vec![
        item("A-1", 1),
        item("B-2", 2),
        item("C-3", 3),
        item("D-4", 4),
    ];
    let start = Instant::now();
    let outcomes = amazon.push(&items).await.expect("push");
    assert!(Instant::now() - start <= Duration::from_secs(70));
    for outcome in &outcomes {
        let ItemOutcome::Failed(error) = outcome else {
            panic!("not confirmed yet: {outcomes:?}");
        };
        assert_eq!(error.class, ErrorClass::Retryable);
        assert_eq!(error.code, "pending");
    }
    assert_eq!(state.lock().expect("state").status_polls, 2);

    // The retry (same idempotency keys) checks the same feed, sends nothing
    // new: still running, then done.
    let outcomes = amazon.push(&items).await.expect("push");
    assert!(matches!(&outcomes[0], ItemOutcome::Failed(e) if e.code == "pending"));
    let outcomes = amazon.push(&items).await.expect("push");
    assert_eq!(outcomes[0], ItemOutcome::Applied { quantity: 1 });
    assert!(matches!(&outcomes[1], ItemOutcome::Failed(e) if e.class == ErrorClass::Permanent));
    assert_eq!(outcomes[3], ItemOutcome::Applied { quantity: 4 });
    assert_eq!(state.lock().expect("state").status_polls, 4);
    // Once resolved, the handle is forgotten: a later push is a new feed.
    amazon.push(&items).await.expect("push");
    let creates = fake
        .api_requests()
        .iter()
        .filter(|(_, r)| {
            path(&r.url) == "/feeds/2021-06-30/documents" && r.method == http::Method::POST
        })
        .count();
    assert_eq!(creates, 2, "one feed until resolved, then a new one");
}

// ---------------------------------------------------------------------------
// Orders: searchOrders v2026-01-01 (§2.6) and ORDER_CHANGE (§2.7)

fn v2026_order(id: &str, status: &str, fulfilled_by: &str, items: &[(&str, &str, i64)]) -> Value {
    json!({
        "orderId": id,
        "createdTime": "2026-09-01T10:00:00Z",
        "lastUpdatedTime": "2026-09-01T10:05:00Z",
        "salesChannel": {"channelName": "AMAZON", "marketplaceId": MARKET, "marketplaceName": "Amazon.nl"},
        "fulfillment": {"fulfillmentStatus": status, "fulfilledBy": fulfilled_by},
        "orderItems": items.iter().map(|(line, sku, qty)| json!({
            "orderItemId": line, "quantityOrdered": qty,
            "product": {"asin": "B000000001", "sellerSku": sku, "title": "Tee"}
        })).collect::<Vec<_>>()
    })
}

fn search_fake() -> Arc<Fake> {
    Fake::new(|req, _| {
        assert_eq!(path(&req.url), "/orders/2026-01-01/orders", "never v0");
        let page2 = param(&req.url, "paginationToken").is_some();
        Ok(if page2 {
            response(
                200,
                &[],
                &json!({"orders": [v2026_order("305-0000005", "PENDING", "MERCHANT", &[("L5", "E-5", 1)])],
                        "lastUpdatedBefore": "2026-09-01T11:00:00Z"}),
            )
        } else {
            response(
                200,
                &[],
                &json!({"orders": [
                    v2026_order("305-0000001", "UNSHIPPED", "MERCHANT", &[("L1", "A-1", 2), ("L2", "B-2", 1)]),
                    v2026_order("305-0000002", "CANCELLED", "MERCHANT", &[("L3", "A-1", 0)]),
                    v2026_order("305-0000003", "SHIPPED", "MERCHANT", &[("L4", "A-1", 1)]),
                    v2026_order("305-0000004", "UNSHIPPED", "AMAZON", &[("L6", "F-6", 1)]),
                    v2026_order("305-0000006", "PENDING", "MERCHANT", &[])
                ], "pagination": {"nextToken": "page-2"}, "lastUpdatedBefore": "2026-09-01T11:00:00Z"}),
            )
        })
    })
}

#[tokio::test(start_paused = true)]
async fn search_orders_polls_maps_states_and_moves_the_cursor() {
    let fake = search_fake();
    let amazon = Amazon::new(config(), fake.clone());
    assert!(amazon.polls_orders());
    let poll = amazon.poll_orders(None).await.expect("poll");

    let keys: Vec<(&str, OrderChangeKind)> = poll
        .changes
        .iter()
        .map(|c| (c.dedup_key.as_str(), c.kind))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("305-0000001:placed", OrderChangeKind::Placed),
            ("305-0000002:cancelled", OrderChangeKind::Cancelled),
            ("305-0000005:placed", OrderChangeKind::Placed),
        ]
    );
    assert_eq!(
        poll.changes[0].lines,
        vec![
            OrderLineRef {
                line_id: "L1".into(),
                keys: vec![("seller_sku".into(), "A-1".into())],
                qty: 2
            },
            OrderLineRef {
                line_id: "L2".into(),
                keys: vec![("seller_sku".into(), "B-2".into())],
                qty: 1
            },
        ]
    );
    assert!(
        poll.changes[1].lines.is_empty(),
        "the whole order is released"
    );
    assert_eq!(poll.cursor.as_deref(), Some("2026-09-01T11:00:00Z"));
    // 0.0056 requests per second: about one poll per three minutes.
    assert!(poll.next_poll_after >= Duration::from_secs(170));

    let calls = fake.api_requests();
    assert_eq!(calls.len(), 2, "both pages read");
    let first = &calls[0].1.url;
    assert!(param(first, "lastUpdatedAfter").is_some());
    assert!(
        param(first, "createdAfter").is_none(),
        "exactly one of the two"
    );
    assert_eq!(param(first, "marketplaceIds").as_deref(), Some(MARKET));
    let second = &calls[1].1.url;
    assert_eq!(param(second, "paginationToken").as_deref(), Some("page-2"));
    assert_eq!(
        param(second, "lastUpdatedAfter"),
        param(first, "lastUpdatedAfter")
    );
    // Every query parameter is declared by searchOrders.
    let model = spec("orders_2026-01-01.json");
    let declared: Vec<String> = model["paths"]["/orders/2026-01-01/orders"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    for (name, _) in query(first).into_iter().chain(query(second)) {
        assert!(declared.contains(&name), "undeclared parameter {name}");
    }

    let again = amazon
        .poll_orders(poll.cursor.as_deref())
        .await
        .expect("poll");
    let calls = fake.api_requests();
    assert_eq!(
        param(&calls[2].1.url, "lastUpdatedAfter").as_deref(),
        Some("2026-09-01T11:00:00Z")
    );
    assert_eq!(again.changes.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_order_first_seen_by_a_poll_is_placed_then_cancelled() {
    // Both notifications lost: the poll is the first word of this order.
    let fake = Fake::new(|_, _| {
        Ok(response(
            200,
            &[],
            &json!({"orders": [v2026_order("305-0000007", "CANCELLED", "MERCHANT", &[("L7", "A-1", 2)])],
                    "lastUpdatedBefore": "2026-09-01T11:00:00Z"}),
        ))
    });
    let amazon = Amazon::new(config(), fake);
    let poll = amazon.poll_orders(None).await.expect("poll");
    let keys: Vec<(&str, OrderChangeKind, usize)> = poll
        .changes
        .iter()
        .map(|c| (c.dedup_key.as_str(), c.kind, c.lines.len()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("305-0000007:placed", OrderChangeKind::Placed, 1),
            ("305-0000007:cancelled", OrderChangeKind::Cancelled, 0),
        ]
    );
    assert_eq!(poll.changes[0].lines[0].qty, 2);
}

#[tokio::test(start_paused = true)]
async fn search_orders_paces_at_its_very_low_rate() {
    let fake = Fake::new(|_, _| Ok(response(200, &[], &json!({"orders": []}))));
    let amazon = Amazon::new(config(), fake.clone());
    let start = Instant::now();
    for _ in 0..21 {
        amazon
            .poll_orders(Some("2026-09-01T00:00:00Z"))
            .await
            .expect("poll");
    }
    let calls = fake.api_requests();
    assert!(
        calls[18].0 - start < Duration::from_secs(1),
        "burst of 20, less one"
    );
    assert!(
        calls[19].0 - start >= Duration::from_secs(170),
        "then one per ~3 min"
    );
}

fn notification(order_id: &str, status: &str, items: &[(&str, &str, i64)]) -> Value {
    json!({
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": "2026-09-01T10:05:01.109Z",
        "Payload": {"OrderChangeNotification": {
            "NotificationLevel": "OrderLevel",
            "SellerId": SELLER,
            "AmazonOrderId": order_id,
            "OrderChangeType": "OrderStatusChange",
            "OrderChangeTrigger": {"TimeOfOrderChange": "2026-09-01T10:05:00.000Z", "ChangeReason": "Order status changed"},
            "Summary": {
                "MarketplaceId": MARKET, "OrderStatus": status, "PurchaseDate": "2026-09-01T10:00:00Z",
                "DestinationPostalCode": "1012AB", "FulfillmentType": "MFN", "OrderType": "StandardOrder",
                "OrderItems": items.iter().map(|(line, sku, qty)| json!({
                    "OrderItemId": line, "SellerSKU": sku, "SupplySourceId": null,
                    "OrderItemStatus": "Unshipped", "Quantity": qty, "QuantityShipped": 0
                })).collect::<Vec<_>>()
            }
        }},
        "NotificationMetadata": {"ApplicationId": "amzn1.sp.solution.app", "SubscriptionId": "sub-1",
                                 "PublishTime": "2026-09-01T10:05:02.000Z", "NotificationId": "d0e9e693-0001"}
    })
}

fn signed(body: &[u8], secret: &str) -> http::HeaderMap {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-stockd-signature",
        http::HeaderValue::from_str(&signature).expect("header"),
    );
    headers
}

#[test]
fn notifications_need_a_valid_signature() {
    let fake = Fake::new(|_, _| Ok(response(500, &[], &json!({}))));
    let amazon = Amazon::new(config(), fake.clone());
    let payload = notification("305-0000001", "Unshipped", &[("L1", "A-1", 2)]);
    let schema = spec("OrderChangeNotification.json");
    assert_valid(&schema, &schema, &payload);
    let body = payload.to_string().into_bytes();

    assert_eq!(
        amazon.webhook(&http::HeaderMap::new(), &body),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        amazon.webhook(&signed(&body, "wrong-secret"), &body),
        Err(WebhookError::BadSignature)
    );
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(
        amazon.webhook(&signed(&body, SECRET), &tampered),
        Err(WebhookError::BadSignature)
    );
    let no_secret = Amazon::new(
        Config {
            notification_secret: String::new(),
            ..config()
        },
        fake.clone(),
    );
    assert_eq!(
        no_secret.webhook(&signed(&body, ""), &body),
        Err(WebhookError::BadSignature)
    );

    let Ok(WebhookAction::Order(change)) = amazon.webhook(&signed(&body, SECRET), &body) else {
        panic!("a signed ORDER_CHANGE is an order");
    };
    assert_eq!(change.order_id, "305-0000001");
    assert_eq!(change.kind, OrderChangeKind::Placed);
    assert_eq!(
        change.lines,
        vec![OrderLineRef {
            line_id: "L1".into(),
            keys: vec![("seller_sku".into(), "A-1".into())],
            qty: 2
        }]
    );
    assert!(fake.requests().is_empty(), "verification makes no call");
}

#[test]
fn other_notifications_and_states_are_ignored() {
    let amazon = Amazon::new(
        config(),
        Fake::new(|_, _| Ok(response(500, &[], &json!({})))),
    );
    let deliver = |payload: &Value| {
        let body = payload.to_string().into_bytes();
        amazon.webhook(&signed(&body, SECRET), &body)
    };
    let mut other = notification("305-1", "Unshipped", &[("L1", "A-1", 1)]);
    other["NotificationType"] = json!("LISTINGS_ITEM_MFN_QUANTITY_CHANGE");
    assert_eq!(
        deliver(&other),
        Ok(WebhookAction::Ignored {
            topic: "LISTINGS_ITEM_MFN_QUANTITY_CHANGE".into()
        })
    );
    assert!(matches!(
        deliver(&notification("305-1", "Shipped", &[("L1", "A-1", 1)])),
        Ok(WebhookAction::Ignored { .. })
    ));
    let Ok(WebhookAction::Order(cancel)) =
        deliver(&notification("305-1", "Canceled", &[("L1", "A-1", 1)]))
    else {
        panic!("a cancellation is an order change");
    };
    assert_eq!(cancel.kind, OrderChangeKind::Cancelled);
    assert_eq!(cancel.dedup_key, "305-1:cancelled");
    let body = b"{not json".to_vec();
    assert!(matches!(
        amazon.webhook(&signed(&body, SECRET), &body),
        Err(WebhookError::BadPayload(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_notification_and_a_poll_of_the_same_change_are_the_same_change() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            200,
            &[],
            &json!({"orders": [
                v2026_order("305-7", "UNSHIPPED", "MERCHANT", &[("L1", "A-1", 2)]),
                v2026_order("305-8", "CANCELLED", "MERCHANT", &[("L2", "B-2", 0)])
            ]}),
        ))
    });
    let amazon = Amazon::new(config(), fake.clone());
    let poll = amazon.poll_orders(None).await.expect("poll");

    for (payload, polled) in [
        (
            notification("305-7", "Pending", &[("L1", "A-1", 2)]),
            &poll.changes[0],
        ),
        (
            notification("305-7", "Unshipped", &[("L1", "A-1", 2)]),
            &poll.changes[0],
        ),
        (
            notification("305-8", "Canceled", &[("L2", "B-2", 2)]),
            &poll.changes[1],
        ),
    ] {
        let body = payload.to_string().into_bytes();
        // Delivered twice: the same change both times.
        for _ in 0..2 {
            let Ok(WebhookAction::Order(change)) = amazon.webhook(&signed(&body, SECRET), &body)
            else {
                panic!("order change expected");
            };
            assert_eq!(&change, polled);
        }
    }
}

// ---------------------------------------------------------------------------
// Bulk read: the listings report (Reports API 2021-06-30)

const STORAGE: &str = "https://tortuga-prod-eu.s3-eu-west-1.amazonaws.com";

fn report_fake(statuses: Vec<&'static str>) -> Arc<Fake> {
    let polls = Mutex::new(statuses);
    Fake::new(move |req, _| {
        let p = path(&req.url).to_owned();
        if req.method == http::Method::POST && p == "/reports/2021-06-30/reports" {
            return Ok(response(202, &[], &json!({"reportId": "ID323"})));
        }
        if p == "/reports/2021-06-30/reports/ID323" {
            let mut polls = polls.lock().expect("polls");
            let next = if polls.len() > 1 {
                polls.remove(0)
            } else {
                polls[0]
            };
            if next == "429" {
                return Ok(quota_exceeded(Some("3")));
            }
            let mut report = json!({"reportId": "ID323", "reportType": "GET_MERCHANT_LISTINGS_ALL_DATA",
                "createdTime": "2026-12-05T05:00:00Z", "processingStatus": next,
                "marketplaceIds": [MARKET]});
            if next == "DONE" || next == "FATAL" {
                report["reportDocumentId"] = json!("amzn1.spdoc.1.4.eu.doc");
            }
            return Ok(response(200, &[], &report));
        }
        if p == "/reports/2021-06-30/documents/amzn1.spdoc.1.4.eu.doc" {
            return Ok(response(
                200,
                &[],
                &json!({"reportDocumentId": "amzn1.spdoc.1.4.eu.doc",
                        "url": format!("{STORAGE}/doc?X-Amz-Signature=abc")}),
            ));
        }
        if req.url.starts_with(STORAGE) {
            let fatal = polls.lock().expect("polls")[0] == "FATAL";
            let body = if fatal {
                "{\"errorDetails\":\"The report could not be generated.\"}".to_owned()
            } else {
                "item-name\tseller-sku\tquantity\tfulfillment-channel\tstatus\n\
                 Mug\tMUG-1\t3\tDEFAULT\tActive\n\
                 Pan\tPAN-1\t\tAMAZON_EU\tActive\n"
                    .to_owned()
            };
            return Ok(raw_response(200, &[], body.into_bytes()));
        }
        Ok(response(
            404,
            &[],
            &json!({"errors": [{"code": "NotFound", "message": p}]}),
        ))
    })
}

fn report_config() -> Config {
    Config {
        report_poll_interval: Duration::from_secs(1),
        ..config()
    }
}

#[tokio::test(start_paused = true)]
async fn the_listings_report_is_created_followed_and_downloaded() {
    let fake = report_fake(vec!["IN_QUEUE", "429", "IN_PROGRESS", "DONE"]);
    let amazon = Amazon::new(report_config(), fake.clone());
    let progress = |_: u64| {};
    let read = amazon.read_all(&progress).await.expect("read_all");

    let shown: Vec<(String, Option<i64>)> = read
        .listings
        .iter()
        .map(|l| (l.key.clone(), l.level.quantity))
        .collect();
    assert_eq!(
        shown,
        vec![("MUG-1".to_owned(), Some(3)), ("PAN-1".to_owned(), None)]
    );
    assert_eq!(
        amazon.listing_key(&external("MUG-1")).as_deref(),
        Some("MUG-1")
    );
    let elsewhere = json!({"seller_sku": "MUG-1", "marketplace_id": "A1PA6795UKMFR9"});
    assert_eq!(
        amazon.listing_key(elsewhere.as_object().expect("object")),
        None,
        "the report covers the connector's marketplace only"
    );
    let calls = fake.api_requests();
    // createReport, four polls (one throttled), getReportDocument, download.
    assert_eq!(read.channel_requests, 7);
    assert_eq!(calls.len(), 7);
    let create = &calls[0].1;
    assert_eq!(create.method, http::Method::POST);
    assert_eq!(
        body_json(create),
        json!({"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [MARKET]})
    );
    assert!(header(create, "x-amz-access-token").is_some());
    // The throttled poll's Retry-After (3 s, longer than the 1 s poll interval) holds the
    // next poll back.
    assert!(calls[3].0 - calls[2].0 >= Duration::from_secs(3));
    let download = &calls[6].1;
    assert!(download.url.starts_with(STORAGE));
    assert!(
        header(download, "x-amz-access-token").is_none(),
        "the access token never goes to the storage host"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fatal_listings_report_is_an_error_with_its_details() {
    let fake = report_fake(vec!["IN_PROGRESS", "FATAL"]);
    let amazon = Amazon::new(report_config(), fake.clone());
    let progress = |_: u64| {};
    let error = amazon.read_all(&progress).await.expect_err("FATAL");
    assert_eq!(error.code, "report_fatal");
    assert_eq!(error.class, ErrorClass::Retryable);
    assert!(error.message.contains("ID323"), "{}", error.message);
    assert!(
        error.message.contains("could not be generated"),
        "{}",
        error.message
    );
}
