//! WooCommerce connector against an in-memory transport.

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::woocommerce::{
    oauth_base_string, oauth_sign, oauth_signature, Config, WooCommerce,
};
use stockd_channels::{
    Availability, ChannelError, Connector, ErrorClass, External, HttpRequest, HttpResponse,
    ItemOutcome, LevelQuery, OrderChangeKind, PushItem, Transport, WebhookAction, WebhookError,
};
use tokio::time::Instant;

type Handler = dyn Fn(&HttpRequest, usize) -> Result<HttpResponse, ChannelError> + Send + Sync;

/// Answers from a closure (given the request and its 0-based number) and
/// records every request with the moment it left.
struct Fake {
    handler: Box<Handler>,
    log: Mutex<Vec<(Instant, HttpRequest)>>,
}

impl Fake {
    fn new(
        handler: impl Fn(&HttpRequest, usize) -> Result<HttpResponse, ChannelError>
            + Send
            + Sync
            + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            handler: Box::new(handler),
            log: Mutex::new(Vec::new()),
        })
    }

    fn requests(&self) -> Vec<(Instant, HttpRequest)> {
        self.log.lock().expect("log lock").clone()
    }
}

#[async_trait]
impl Transport for Fake {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let n = {
            let mut log = self.log.lock().expect("log lock");
            log.push((Instant::now(), request.clone()));
            log.len() - 1
        };
        (self.handler)(&request, n)
    }
}

const HTTPS_SITE: &str = "https://shop.example";
const HTTP_SITE: &str = "http://127.0.0.1:8080";

fn config(site: &str) -> Config {
    Config {
        site_url: site.to_owned(),
        consumer_key: "ck_4f1b".to_owned(),
        consumer_secret: "cs_9d2e".to_owned(),
        webhook_secret: "wc_secret".to_owned(),
        rate_limit: None,
        ..Default::default()
    }
}

fn connector(site: &str, fake: &Arc<Fake>) -> WooCommerce {
    WooCommerce::new(config(site), fake.clone())
}

fn response(status: u16, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    HttpResponse {
        status,
        headers: map,
        body: body.to_string().into_bytes(),
    }
}

fn body_json(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body).expect("request body is JSON")
}

fn updates(request: &HttpRequest) -> Vec<Value> {
    body_json(request)["update"]
        .as_array()
        .expect("update array")
        .clone()
}

/// What WooCommerce answers to a batch that succeeds: each updated resource.
fn echo_batch(request: &HttpRequest) -> HttpResponse {
    let answer: Vec<Value> = updates(request)
        .into_iter()
        .map(|u| {
            json!({"id": u["id"], "manage_stock": true, "stock_quantity": u["stock_quantity"],
                   "stock_status": u["stock_status"], "backorders": u["backorders"]})
        })
        .collect();
    response(200, &[], &json!({ "update": answer }))
}

/// The path of a request URL, without site and query.
fn path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split('?').next().unwrap_or("").to_owned()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn external(value: Value) -> External {
    value.as_object().expect("object").clone()
}

fn item(sku: &str, ext: Value, quantity: i64, availability: Availability) -> PushItem {
    PushItem {
        sku: sku.to_owned(),
        external: external(ext),
        quantity,
        availability,
        eta: None,
        believed: None,
        idempotency_key: format!("{sku}:1"),
        reference: "stockd://ledger/1".to_owned(),
    }
}

fn simple(id: u64, quantity: i64) -> PushItem {
    item(
        &format!("S-{id}"),
        json!({ "product_id": id }),
        quantity,
        if quantity > 0 {
            Availability::InStock
        } else {
            Availability::OutOfStock
        },
    )
}

fn variation(parent: u64, id: u64, quantity: i64) -> PushItem {
    item(
        &format!("V-{parent}-{id}"),
        json!({ "product_id": parent, "variation_id": id }),
        quantity,
        Availability::InStock,
    )
}

fn applied(outcome: &ItemOutcome) -> i64 {
    match outcome {
        ItemOutcome::Applied { quantity } => *quantity,
        other => panic!("expected Applied, got {other:?}"),
    }
}

fn failed(outcome: &ItemOutcome) -> &ChannelError {
    match outcome {
        ItemOutcome::Failed(error) => error,
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Push: batching and bodies.

#[tokio::test]
async fn push_splits_by_hundred_and_by_parent_and_keeps_input_order() {
    let fake = Fake::new(|req, _| Ok(echo_batch(req)));
    let wc = connector(HTTPS_SITE, &fake);
    assert_eq!(wc.kind(), "woocommerce");
    assert_eq!(wc.max_batch(), 100);

    // Interleave 150 simple products with variations of two parents.
    let mut items = Vec::new();
    for i in 0..150u64 {
        items.push(simple(1000 + i, i as i64));
        if i < 30 {
            items.push(variation(7, 700 + i, i as i64 + 1));
        }
        if i < 5 {
            items.push(variation(8, 800 + i, 2));
        }
    }
    let outcomes = wc.push(&items).await.expect("push");
    assert_eq!(outcomes.len(), items.len());
    for (item, outcome) in items.iter().zip(&outcomes) {
        assert_eq!(applied(outcome), item.quantity, "{}", item.sku);
    }

    let requests = fake.requests();
    let shape: Vec<(String, usize)> = requests
        .iter()
        .map(|(_, r)| (path(&r.url), updates(r).len()))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("/wp-json/wc/v3/products/batch".to_owned(), 100),
            ("/wp-json/wc/v3/products/batch".to_owned(), 50),
            ("/wp-json/wc/v3/products/7/variations/batch".to_owned(), 30),
            ("/wp-json/wc/v3/products/8/variations/batch".to_owned(), 5),
        ]
    );
    // Variation batches carry the variation ids.
    let ids: Vec<u64> = updates(&requests[3].1)
        .iter()
        .map(|u| u["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, vec![800, 801, 802, 803, 804]);
}

#[tokio::test]
async fn push_bodies_are_what_woocommerce_expects() {
    let fake = Fake::new(|req, _| Ok(echo_batch(req)));
    let wc = connector(HTTPS_SITE, &fake);
    let items = vec![
        simple(11, 5),
        item("B", json!({"product_id": 12}), 0, Availability::Backorder),
        simple(13, 0),
        // In stock by availability but nothing to sell: WooCommerce shows
        // out of stock for a managed quantity of 0 without backorders.
        item("Z", json!({"product_id": 14}), 0, Availability::InStock),
    ];
    wc.push(&items).await.expect("push");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0].1;
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(
        request.url,
        "https://shop.example/wp-json/wc/v3/products/batch"
    );
    assert_eq!(
        request
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    assert_eq!(
        body_json(request),
        json!({"update": [
            {"id": 11, "manage_stock": true, "stock_quantity": 5, "backorders": "no", "stock_status": "instock"},
            {"id": 12, "manage_stock": true, "stock_quantity": 0, "backorders": "notify", "stock_status": "onbackorder"},
            {"id": 13, "manage_stock": true, "stock_quantity": 0, "backorders": "no", "stock_status": "outofstock"},
            {"id": 14, "manage_stock": true, "stock_quantity": 0, "backorders": "no", "stock_status": "outofstock"},
        ]})
    );
}

#[tokio::test]
async fn numeric_string_ids_are_accepted_and_bad_ones_fail_per_item() {
    let fake = Fake::new(|req, _| Ok(echo_batch(req)));
    let wc = connector(HTTPS_SITE, &fake);
    let items = vec![
        item(
            "A",
            json!({"product_id": "21", "variation_id": "22"}),
            3,
            Availability::InStock,
        ),
        item("B", json!({"sku": "B"}), 3, Availability::InStock),
        item("C", json!({"product_id": "abc"}), 3, Availability::InStock),
        item(
            "D",
            json!({"product_id": 21, "variation_id": true}),
            3,
            Availability::InStock,
        ),
        item(
            "E",
            json!({"product_id": 31, "variation_id": 0}),
            4,
            Availability::InStock,
        ),
    ];
    let outcomes = wc.push(&items).await.expect("push");
    assert_eq!(applied(&outcomes[0]), 3);
    for outcome in &outcomes[1..4] {
        let error = failed(outcome);
        assert_eq!(error.class, ErrorClass::Permanent);
        assert_eq!(error.code, "missing_external_id");
    }
    assert_eq!(applied(&outcomes[4]), 4);
    let paths: Vec<String> = fake.requests().iter().map(|(_, r)| path(&r.url)).collect();
    assert_eq!(
        paths,
        vec![
            "/wp-json/wc/v3/products/21/variations/batch",
            "/wp-json/wc/v3/products/batch"
        ]
    );
    assert_eq!(updates(&fake.requests()[0].1)[0]["id"], json!(22));
    assert_eq!(updates(&fake.requests()[1].1)[0]["id"], json!(31));
}

// ---------------------------------------------------------------------------
// Auth.

#[tokio::test]
async fn https_uses_basic_auth_without_query_credentials() {
    let fake = Fake::new(|req, _| Ok(echo_batch(req)));
    let wc = connector(HTTPS_SITE, &fake);
    wc.push(&[simple(1, 1)]).await.expect("push");
    let request = &fake.requests()[0].1;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ck_4f1b:cs_9d2e")
    );
    assert_eq!(
        request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        Some(expected.as_str())
    );
    assert!(!request.url.contains('?'), "{}", request.url);
}

/// The base string and signature for a fixed request, written out by hand
/// and computed with `openssl dgst -sha256 -hmac 'cs_9d2e&' -binary | base64`.
#[test]
fn oauth_signature_matches_fixed_vector() {
    let query = vec![
        ("include".to_owned(), "12,15".to_owned()),
        ("per_page".to_owned(), "100".to_owned()),
        ("page".to_owned(), "1".to_owned()),
    ];
    let signed = oauth_sign(
        "GET",
        "http://127.0.0.1:8080/wp-json/wc/v3/products",
        &query,
        "ck_4f1b",
        "cs_9d2e",
        1_700_000_000,
        "abcdef0123456789abcdef0123456789",
    );
    let expected_base = "GET&http%3A%2F%2F127.0.0.1%3A8080%2Fwp-json%2Fwc%2Fv3%2Fproducts&\
        include%3D12%252C15%26oauth_consumer_key%3Dck_4f1b%26\
        oauth_nonce%3Dabcdef0123456789abcdef0123456789%26\
        oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D1700000000%26\
        page%3D1%26per_page%3D100";
    let unsigned: Vec<(String, String)> = signed
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .cloned()
        .collect();
    assert_eq!(
        oauth_base_string(
            "GET",
            "http://127.0.0.1:8080/wp-json/wc/v3/products",
            &unsigned
        ),
        expected_base
    );
    assert_eq!(
        oauth_signature("cs_9d2e", expected_base),
        "s6+910BiKdJATE2M0T0O3HBTV+WIyrz4+zkvfQfX3Ms="
    );
    let signature = signed
        .iter()
        .find(|(k, _)| k == "oauth_signature")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        signature,
        Some("s6+910BiKdJATE2M0T0O3HBTV+WIyrz4+zkvfQfX3Ms=")
    );
    let method = signed
        .iter()
        .find(|(k, _)| k == "oauth_signature_method")
        .map(|(_, v)| v.as_str());
    assert_eq!(method, Some("HMAC-SHA256"));
}

/// RFC 5849 §3.4.1 done independently: encode each name and value, sort the
/// encoded pairs, join, encode the whole; key = secret "&" (no token).
fn rfc5849_signature(method: &str, url: &str, params: &[(String, String)], secret: &str) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    pairs.sort();
    let normalized = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!("{method}&{}&{}", enc(url), enc(&normalized));
    let mut mac = Hmac::<Sha256>::new_from_slice(format!("{secret}&").as_bytes()).expect("key");
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn http_uses_oauth_query_parameters_with_valid_signatures_and_fresh_nonces() {
    let fake = Fake::new(|req, _| {
        if req.method == http::Method::GET {
            Ok(response(
                200,
                &[("X-WP-TotalPages", "1")],
                &json!([{"id": 5, "stock_quantity": 2, "stock_status": "instock"}]),
            ))
        } else {
            Ok(echo_batch(req))
        }
    });
    let wc = connector(HTTP_SITE, &fake);
    wc.push(&[simple(5, 2)]).await.expect("push");
    wc.read_levels(&[LevelQuery {
        sku: "S-5".into(),
        external: external(json!({"product_id": 5})),
    }])
    .await
    .expect("read");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut nonces = Vec::new();
    for (_, request) in &requests {
        assert!(request.headers.get(http::header::AUTHORIZATION).is_none());
        let params = query(&request.url);
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} missing in {}", request.url))
        };
        assert_eq!(get("oauth_consumer_key"), "ck_4f1b");
        assert_eq!(get("oauth_signature_method"), "HMAC-SHA256");
        let timestamp: u64 = get("oauth_timestamp").parse().expect("timestamp");
        assert!(
            timestamp.abs_diff(now) < 60,
            "timestamp {timestamp} vs {now}"
        );
        let nonce = get("oauth_nonce");
        assert!(nonce.len() >= 16 && nonce.chars().all(|c| c.is_ascii_alphanumeric()));
        nonces.push(nonce);
        let base_url = format!("{HTTP_SITE}{}", path(&request.url));
        assert_eq!(
            get("oauth_signature"),
            rfc5849_signature(request.method.as_str(), &base_url, &params, "cs_9d2e"),
            "{}",
            request.url
        );
    }
    assert_ne!(nonces[0], nonces[1]);
    // The read's own parameters are signed too.
    assert_eq!(param(&requests[1].1.url, "include").as_deref(), Some("5"));
}

// ---------------------------------------------------------------------------
// Push: answers and errors.

#[tokio::test]
async fn per_item_errors_map_to_their_items() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            200,
            &[],
            &json!({"update": [
                {"id": 1, "stock_quantity": 7, "stock_status": "instock"},
                {"id": 2, "error": {"code": "woocommerce_rest_product_invalid_id",
                                    "message": "Invalid ID.", "data": {"status": 404}}},
                {"id": 3, "error": {"code": "db_update_error",
                                    "message": "Could not update.", "data": {"status": 500}}},
                {"id": 4, "stock_quantity": null},
            ]}),
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let items = vec![simple(1, 5), simple(2, 5), simple(3, 5), simple(4, 6)];
    let outcomes = wc.push(&items).await.expect("push");
    // The channel's own count wins when it reports one.
    assert_eq!(applied(&outcomes[0]), 7);
    let e = failed(&outcomes[1]);
    assert_eq!(
        (e.class, e.code.as_str(), e.status),
        (
            ErrorClass::Permanent,
            "woocommerce_rest_product_invalid_id",
            Some(404)
        )
    );
    assert_eq!(e.message, "Invalid ID.");
    let e = failed(&outcomes[2]);
    assert_eq!(
        (e.class, e.code.as_str(), e.status),
        (ErrorClass::Retryable, "db_update_error", Some(500))
    );
    assert_eq!(applied(&outcomes[3]), 6);
}

#[tokio::test]
async fn answers_out_of_order_are_matched_by_id() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            200,
            &[],
            &json!({"update": [
                {"id": 2, "stock_quantity": 20},
                {"id": 1, "error": {"code": "woocommerce_rest_invalid_product_id",
                                    "message": "Use the variations endpoint.", "data": {"status": 404}}},
            ]}),
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let outcomes = wc
        .push(&[simple(1, 1), simple(2, 2), simple(3, 3)])
        .await
        .expect("push");
    assert_eq!(failed(&outcomes[0]).class, ErrorClass::Permanent);
    assert_eq!(applied(&outcomes[1]), 20);
    // No answer for id 3: unknown whether it landed; resending is safe.
    assert_eq!(failed(&outcomes[2]).class, ErrorClass::Retryable);
}

#[tokio::test]
async fn entity_too_large_splits_until_accepted() {
    // The site filters its limit down to 30 and says so in the message.
    let fake = Fake::new(|req, _| {
        if updates(req).len() > 30 {
            return Ok(response(
                413,
                &[],
                &json!({"code": "woocommerce_rest_request_entity_too_large",
                        "message": "Unable to accept more than 30 items for this request.",
                        "data": {"status": 413}}),
            ));
        }
        Ok(echo_batch(req))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let items: Vec<PushItem> = (1..=100).map(|i| simple(i, i as i64)).collect();
    let outcomes = wc.push(&items).await.expect("push");
    for (item, outcome) in items.iter().zip(&outcomes) {
        assert_eq!(applied(outcome), item.quantity);
    }
    let sizes: Vec<usize> = fake
        .requests()
        .iter()
        .map(|(_, r)| updates(r).len())
        .collect();
    assert_eq!(sizes, vec![100, 30, 30, 30, 10]);

    // The learned limit holds for the next push: no second 413.
    let again = wc.push(&items[..40]).await.expect("push");
    assert_eq!(again.len(), 40);
    let sizes: Vec<usize> = fake.requests()[5..]
        .iter()
        .map(|(_, r)| updates(r).len())
        .collect();
    assert_eq!(sizes, vec![30, 10]);
}

#[tokio::test]
async fn entity_too_large_without_a_stated_limit_halves() {
    let fake = Fake::new(|req, _| {
        if updates(req).len() > 40 {
            return Ok(response(
                413,
                &[],
                &json!({"code": "woocommerce_rest_request_entity_too_large",
                        "message": "Too large.", "data": {"status": 413}}),
            ));
        }
        Ok(echo_batch(req))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let items: Vec<PushItem> = (1..=100).map(|i| simple(i, 1)).collect();
    let outcomes = wc.push(&items).await.expect("push");
    assert!(outcomes.iter().all(|o| applied(o) == 1));
    let sizes: Vec<usize> = fake
        .requests()
        .iter()
        .map(|(_, r)| updates(r).len())
        .collect();
    assert_eq!(sizes, vec![100, 50, 25, 25, 25, 25]);
}

#[tokio::test]
async fn entity_too_large_for_a_single_item_stops() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            413,
            &[],
            &json!({"code": "woocommerce_rest_request_entity_too_large",
                    "message": "Unable to accept more than 0 items for this request.",
                    "data": {"status": 413}}),
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let error = wc
        .push(&[simple(1, 1), simple(2, 1)])
        .await
        .expect_err("nothing applied");
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(error.status, Some(413));
    assert_eq!(error.code, "woocommerce_rest_request_entity_too_large");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_call_reports_retry_after_and_blocks_until_then() {
    let fake = Fake::new(|req, n| {
        if n == 0 {
            return Ok(response(
                429,
                &[("Retry-After", "5")],
                &json!({"code": "too_many_requests", "message": "Slow down."}),
            ));
        }
        Ok(echo_batch(req))
    });
    let wc = connector(HTTPS_SITE, &fake);
    // Three parents: after the 429 the other two calls are not attempted.
    let items = vec![
        variation(1, 11, 1),
        variation(2, 21, 1),
        variation(3, 31, 1),
    ];
    let error = wc.push(&items).await.expect_err("whole call rate limited");
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(error.status, Some(429));
    assert_eq!(fake.requests().len(), 1);

    let outcomes = wc.push(&items).await.expect("push after the wait");
    assert!(outcomes.iter().all(|o| applied(o) == 1));
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    let first = requests[0].0;
    for (at, _) in &requests[1..] {
        assert!(
            at.duration_since(first) >= Duration::from_secs(5),
            "sent {:?} after the 429",
            at.duration_since(first)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limit_after_partial_success_fails_only_the_rest() {
    let fake = Fake::new(|req, n| {
        if n == 1 {
            return Ok(response(429, &[("Retry-After", "2")], &json!({})));
        }
        Ok(echo_batch(req))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let items = vec![
        variation(1, 11, 1),
        variation(2, 21, 1),
        variation(3, 31, 1),
    ];
    let outcomes = wc.push(&items).await.expect("partly applied");
    assert_eq!(applied(&outcomes[0]), 1);
    for outcome in &outcomes[1..] {
        let error = failed(outcome);
        assert_eq!(error.class, ErrorClass::RateLimited);
        assert_eq!(error.retry_after, Some(Duration::from_secs(2)));
    }
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn configured_rate_limit_paces_requests() {
    let fake = Fake::new(|req, _| Ok(echo_batch(req)));
    let mut cfg = config(HTTPS_SITE);
    cfg.rate_limit = Some((2.0, 1.0));
    let wc = WooCommerce::new(cfg, fake.clone());
    let start = Instant::now();
    let items: Vec<PushItem> = (1..=5).map(|p| variation(p, p * 10, 1)).collect();
    let outcomes = wc.push(&items).await.expect("push");
    assert_eq!(outcomes.len(), 5);
    let offsets: Vec<f64> = fake
        .requests()
        .iter()
        .map(|(at, _)| at.duration_since(start).as_secs_f64())
        .collect();
    assert_eq!(offsets.len(), 5);
    // Never more than the bucket allows: 2 at once, then 1 per second.
    for (k, t) in offsets.iter().enumerate() {
        let allowed = 2.0 + t.floor();
        assert!(
            (k + 1) as f64 <= allowed + 1e-6,
            "request {k} at {t}s: {offsets:?}"
        );
    }
    let expected = [0.0, 0.0, 1.0, 2.0, 3.0];
    for (got, want) in offsets.iter().zip(expected) {
        assert!((got - want).abs() < 0.05, "{offsets:?}");
    }
}

#[tokio::test]
async fn server_errors_are_retryable_with_the_envelope_kept() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            503,
            &[],
            &json!({"code": "internal_server_error", "message": "Busy.", "data": {"status": 503}}),
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let error = wc.push(&[simple(1, 1)]).await.expect_err("failed");
    assert_eq!(error.class, ErrorClass::Retryable);
    assert_eq!(error.code, "internal_server_error");
    assert_eq!(error.message, "Busy.");
    assert_eq!(error.status, Some(503));
    assert!(error.body.as_deref().is_some_and(|b| b.contains("Busy.")));
}

#[tokio::test]
async fn long_error_bodies_are_cut() {
    let fake = Fake::new(|_, _| {
        Ok(HttpResponse {
            status: 502,
            headers: http::HeaderMap::new(),
            body: vec![b'x'; 10_000],
        })
    });
    let wc = connector(HTTPS_SITE, &fake);
    let error = wc.push(&[simple(1, 1)]).await.expect_err("failed");
    assert_eq!(error.class, ErrorClass::Retryable);
    assert_eq!(error.code, "http_502");
    let body = error.body.expect("body");
    assert!(body.len() <= 2048 + '…'.len_utf8(), "{}", body.len());
}

#[tokio::test]
async fn network_errors_are_retryable() {
    let fake = Fake::new(|_, _| {
        Err(ChannelError::new(
            ErrorClass::Retryable,
            "network",
            "connection refused",
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let error = wc.push(&[simple(1, 1)]).await.expect_err("failed");
    assert_eq!(error.class, ErrorClass::Retryable);
    assert_eq!(error.code, "network");
}

#[tokio::test]
async fn one_failed_parent_does_not_fail_the_others() {
    let fake = Fake::new(|req, _| {
        if path(&req.url).contains("/products/2/") {
            return Ok(response(
                500,
                &[],
                &json!({"code": "x", "message": "boom", "data": {"status": 500}}),
            ));
        }
        Ok(echo_batch(req))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let outcomes = wc
        .push(&[variation(1, 11, 4), variation(2, 21, 4), simple(9, 4)])
        .await
        .expect("partly applied");
    assert_eq!(applied(&outcomes[0]), 4);
    assert_eq!(failed(&outcomes[1]).class, ErrorClass::Retryable);
    assert_eq!(applied(&outcomes[2]), 4);
}

#[tokio::test]
async fn unauthorized_is_permanent_and_stops_the_push() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            401,
            &[],
            &json!({"code": "woocommerce_rest_authentication_error",
                    "message": "Consumer secret is invalid.", "data": {"status": 401}}),
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let error = wc
        .push(&[variation(1, 11, 1), variation(2, 21, 1)])
        .await
        .expect_err("failed");
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(error.code, "woocommerce_rest_authentication_error");
    assert_eq!(error.message, "Consumer secret is invalid.");
    assert_eq!(error.status, Some(401));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn cannot_edit_and_bad_request_are_permanent() {
    for (status, code) in [
        (401, "woocommerce_rest_cannot_edit"),
        (400, "rest_invalid_param"),
        (404, "rest_no_route"),
    ] {
        let fake = Fake::new(move |_, _| {
            Ok(response(
                status,
                &[],
                &json!({"code": code, "message": "no", "data": {"status": status}}),
            ))
        });
        let wc = connector(HTTPS_SITE, &fake);
        let error = wc.push(&[simple(1, 1)]).await.expect_err("failed");
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::Permanent, code)
        );
    }
}

// ---------------------------------------------------------------------------
// Reading levels.

fn product_json(id: u64) -> Value {
    json!({"id": id, "manage_stock": true, "stock_quantity": id % 7, "stock_status": "instock"})
}

#[tokio::test]
async fn read_levels_follows_pages_and_maps_fields() {
    let fake = Fake::new(|req, _| {
        let p = path(&req.url);
        assert_eq!(req.method, http::Method::GET);
        assert_eq!(param(&req.url, "per_page").as_deref(), Some("100"));
        let page: u32 = param(&req.url, "page")
            .and_then(|p| p.parse().ok())
            .expect("page");
        let include: Vec<u64> = param(&req.url, "include")
            .expect("include")
            .split(',')
            .map(|s| s.parse().expect("id"))
            .collect();
        match p.as_str() {
            "/wp-json/wc/v3/products" => {
                // Product 150 does not exist.
                let existing: Vec<u64> = include.iter().copied().filter(|&id| id != 150).collect();
                if include.len() == 100 {
                    // Paged with X-WP-TotalPages: 60 then the rest.
                    let slice = if page == 1 {
                        &existing[..60]
                    } else {
                        &existing[60..]
                    };
                    let body: Vec<Value> = slice.iter().map(|&id| product_json(id)).collect();
                    Ok(response(
                        200,
                        &[("X-WP-Total", "100"), ("X-WP-TotalPages", "2")],
                        &Value::Array(body),
                    ))
                } else {
                    // Paged with Link headers only.
                    let (slice, link) = if page == 1 {
                        (
                            &existing[..25],
                            "<https://shop.example/wp-json/wc/v3/products?page=2>; rel=\"next\"",
                        )
                    } else {
                        (
                            &existing[25..],
                            "<https://shop.example/wp-json/wc/v3/products?page=1>; rel=\"prev\"",
                        )
                    };
                    let body: Vec<Value> = slice.iter().map(|&id| product_json(id)).collect();
                    Ok(response(200, &[("Link", link)], &Value::Array(body)))
                }
            }
            "/wp-json/wc/v3/products/9/variations" => Ok(response(
                200,
                &[("X-WP-TotalPages", "1")],
                &json!([
                    {"id": 91, "manage_stock": true, "stock_quantity": 0, "stock_status": "onbackorder"},
                    {"id": 92, "manage_stock": false, "stock_quantity": null, "stock_status": "outofstock"},
                ]),
            )),
            "/wp-json/wc/v3/products/8/variations" => Ok(response(
                404,
                &[],
                &json!({"code": "woocommerce_rest_product_invalid_id",
                        "message": "Invalid ID.", "data": {"status": 404}}),
            )),
            other => panic!("unexpected {other}"),
        }
    });
    let wc = connector(HTTPS_SITE, &fake);
    let mut listings: Vec<LevelQuery> = (1..=150u64)
        .map(|id| LevelQuery {
            sku: format!("S-{id}"),
            external: external(json!({ "product_id": id })),
        })
        .collect();
    for (sku, ext) in [
        ("V91", json!({"product_id": 9, "variation_id": 91})),
        ("V92", json!({"product_id": "9", "variation_id": "92"})),
        ("V93", json!({"product_id": 9, "variation_id": 93})),
        ("V81", json!({"product_id": 8, "variation_id": 81})),
        ("BAD", json!({})),
    ] {
        listings.push(LevelQuery {
            sku: sku.to_owned(),
            external: external(ext),
        });
    }
    let levels = wc.read_levels(&listings).await.expect("read");
    assert_eq!(levels.len(), listings.len());
    for id in 1..150u64 {
        let level = levels[(id - 1) as usize].as_ref().expect("found");
        assert_eq!(level.quantity, Some((id % 7) as i64));
        assert_eq!(level.availability, Some(Availability::InStock));
    }
    let missing = levels[149].as_ref().expect_err("150 missing");
    assert_eq!(
        (missing.class, missing.code.as_str()),
        (ErrorClass::Permanent, "not_found")
    );
    let v91 = levels[150].as_ref().expect("v91");
    assert_eq!(v91.quantity, Some(0));
    assert_eq!(v91.availability, Some(Availability::Backorder));
    let v92 = levels[151].as_ref().expect("v92");
    assert_eq!(v92.quantity, None);
    assert_eq!(v92.availability, Some(Availability::OutOfStock));
    for index in [152, 153] {
        let error = levels[index].as_ref().expect_err("not found");
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::Permanent, "not_found")
        );
    }
    let bad = levels[154].as_ref().expect_err("bad external");
    assert_eq!(bad.code, "missing_external_id");

    let requests: Vec<(String, Option<String>)> = fake
        .requests()
        .iter()
        .map(|(_, r)| (path(&r.url), param(&r.url, "page")))
        .collect();
    let page = |p: &str, n: &str| (p.to_owned(), Some(n.to_owned()));
    assert_eq!(
        requests,
        vec![
            page("/wp-json/wc/v3/products", "1"),
            page("/wp-json/wc/v3/products", "2"),
            page("/wp-json/wc/v3/products", "1"),
            page("/wp-json/wc/v3/products", "2"),
            page("/wp-json/wc/v3/products/9/variations", "1"),
            page("/wp-json/wc/v3/products/8/variations", "1"),
        ]
    );
}

#[tokio::test]
async fn read_levels_fails_whole_on_server_errors() {
    let fake = Fake::new(|_, _| {
        Ok(response(
            500,
            &[],
            &json!({"code": "oops", "message": "down", "data": {"status": 500}}),
        ))
    });
    let wc = connector(HTTPS_SITE, &fake);
    let error = wc
        .read_levels(&[LevelQuery {
            sku: "S-1".into(),
            external: external(json!({"product_id": 1})),
        }])
        .await
        .expect_err("failed");
    assert_eq!(error.class, ErrorClass::Retryable);
    assert_eq!(error.code, "oops");
}

// ---------------------------------------------------------------------------
// Webhooks.

const NOTE_BODY: &str = r#"{"id":727,"status":"processing","line_items":[{"id":315,"product_id":22,"variation_id":23,"sku":"Bar3","quantity":1}]}"#;
/// From the channel notes' vector table (secret `wc_secret`).
const NOTE_SIGNATURE: &str = "3je8afDjvvXtMdP/QdRy2Wrm/yMM2XWdlr0ishOWuY0=";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"wc_secret").expect("key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn headers(topic: Option<&str>, signature: Option<&str>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if let Some(topic) = topic {
        map.insert(
            "x-wc-webhook-topic",
            http::HeaderValue::from_str(topic).expect("topic"),
        );
        map.insert(
            "x-wc-webhook-resource",
            http::HeaderValue::from_static("order"),
        );
    }
    if let Some(signature) = signature {
        map.insert(
            "x-wc-webhook-signature",
            http::HeaderValue::from_str(signature).expect("signature"),
        );
    }
    map.insert("x-wc-webhook-id", http::HeaderValue::from_static("4"));
    map
}

fn webhook_connector() -> WooCommerce {
    let fake = Fake::new(|_, _| panic!("webhooks send nothing"));
    connector(HTTPS_SITE, &fake)
}

#[tokio::test]
async fn webhook_with_the_notes_vector_places_the_order() {
    assert_eq!(sign(NOTE_BODY.as_bytes()), NOTE_SIGNATURE);
    let wc = webhook_connector();
    let action = wc
        .webhook(
            &headers(Some("order.created"), Some(NOTE_SIGNATURE)),
            NOTE_BODY.as_bytes(),
        )
        .expect("accepted");
    let WebhookAction::Order(change) = action else {
        panic!("expected an order, got {action:?}");
    };
    assert_eq!(change.order_id, "727");
    assert_eq!(change.kind, OrderChangeKind::Placed);
    assert_eq!(change.dedup_key, "727:processing");
    assert_eq!(change.lines.len(), 1);
    let line = &change.lines[0];
    assert_eq!(line.line_id, "315");
    assert_eq!(line.qty, 1);
    assert_eq!(
        line.keys,
        vec![
            ("variation_id".to_owned(), "23".to_owned()),
            ("product_id".to_owned(), "22".to_owned()),
            ("sku".to_owned(), "Bar3".to_owned()),
        ]
    );
}

#[tokio::test]
async fn webhook_signature_wrong_or_missing_is_refused() {
    let wc = webhook_connector();
    let body = NOTE_BODY.as_bytes();
    assert_eq!(
        wc.webhook(&headers(Some("order.created"), None), body),
        Err(WebhookError::BadSignature)
    );
    let wrong = sign(b"another body");
    assert_eq!(
        wc.webhook(&headers(Some("order.created"), Some(&wrong)), body),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        wc.webhook(&headers(Some("order.created"), Some("")), body),
        Err(WebhookError::BadSignature)
    );
    // A body changed after signing.
    let tampered = NOTE_BODY.replace("\"quantity\":1", "\"quantity\":9");
    assert_eq!(
        wc.webhook(
            &headers(Some("order.created"), Some(NOTE_SIGNATURE)),
            tampered.as_bytes()
        ),
        Err(WebhookError::BadSignature)
    );
    // The secret of another site.
    let mut other = config(HTTPS_SITE);
    other.webhook_secret = "other".into();
    let fake = Fake::new(|_, _| panic!("webhooks send nothing"));
    let other = WooCommerce::new(other, fake);
    assert_eq!(
        other.webhook(&headers(Some("order.created"), Some(NOTE_SIGNATURE)), body),
        Err(WebhookError::BadSignature)
    );
}

#[tokio::test]
async fn webhook_creation_ping_is_acknowledged() {
    let wc = webhook_connector();
    // As WooCommerce sends it: form body, no signature headers.
    assert_eq!(
        wc.webhook(&http::HeaderMap::new(), b"webhook_id=4"),
        Ok(WebhookAction::Ping)
    );
    let signature = sign(b"webhook_id=4");
    assert_eq!(
        wc.webhook(&headers(None, Some(&signature)), b"webhook_id=4"),
        Ok(WebhookAction::Ping)
    );
    assert_eq!(
        wc.webhook(&headers(None, Some("bogus")), b"webhook_id=4"),
        Err(WebhookError::BadSignature)
    );
    // Not a ping: an unsigned body of any other shape.
    assert_eq!(
        wc.webhook(&http::HeaderMap::new(), b"webhook_id=abc"),
        Err(WebhookError::BadSignature)
    );
}

fn order_body(id: u64, status: &str) -> String {
    json!({"id": id, "status": status, "line_items": [
        {"id": 1, "product_id": 40, "variation_id": 0, "sku": "", "quantity": 2},
        {"id": 2, "product_id": 41, "variation_id": 0, "sku": "TEE-1", "quantity": 3},
    ]})
    .to_string()
}

#[tokio::test]
async fn webhook_order_statuses_map_to_changes() {
    let wc = webhook_connector();
    for (topic, status, expected) in [
        ("order.created", "processing", Some(OrderChangeKind::Placed)),
        ("order.updated", "on-hold", Some(OrderChangeKind::Placed)),
        (
            "order.updated",
            "cancelled",
            Some(OrderChangeKind::Cancelled),
        ),
        (
            "order.updated",
            "refunded",
            Some(OrderChangeKind::Cancelled),
        ),
        ("order.updated", "failed", Some(OrderChangeKind::Cancelled)),
        ("order.updated", "completed", None),
        ("order.created", "pending", None),
        ("order.updated", "trash", None),
    ] {
        let body = order_body(900, status);
        let signature = sign(body.as_bytes());
        let action = wc
            .webhook(&headers(Some(topic), Some(&signature)), body.as_bytes())
            .expect("accepted");
        match (expected, action) {
            (Some(kind), WebhookAction::Order(change)) => {
                assert_eq!(change.kind, kind, "{status}");
                assert_eq!(change.order_id, "900");
                assert_eq!(change.dedup_key, format!("900:{status}"));
                if kind == OrderChangeKind::Cancelled {
                    assert!(change.lines.is_empty(), "{status}: whole order");
                } else {
                    let keys: Vec<_> = change.lines.iter().map(|l| l.keys.clone()).collect();
                    assert_eq!(
                        keys,
                        vec![
                            vec![("product_id".to_owned(), "40".to_owned())],
                            vec![
                                ("product_id".to_owned(), "41".to_owned()),
                                ("sku".to_owned(), "TEE-1".to_owned())
                            ],
                        ]
                    );
                    let qtys: Vec<i64> = change.lines.iter().map(|l| l.qty).collect();
                    assert_eq!(qtys, vec![2, 3]);
                }
            }
            (None, WebhookAction::Ignored { topic: t }) => assert_eq!(t, topic),
            (expected, action) => panic!("{status}: expected {expected:?}, got {action:?}"),
        }
    }
}

#[tokio::test]
async fn webhook_dedup_keys_follow_order_and_status() {
    let wc = webhook_connector();
    let key = |id: u64, status: &str| {
        let body = order_body(id, status);
        let signature = sign(body.as_bytes());
        match wc.webhook(
            &headers(Some("order.updated"), Some(&signature)),
            body.as_bytes(),
        ) {
            Ok(WebhookAction::Order(change)) => change.dedup_key,
            other => panic!("{other:?}"),
        }
    };
    // The same order and status delivered twice: same key.
    assert_eq!(key(5, "processing"), key(5, "processing"));
    assert_ne!(key(5, "processing"), key(5, "cancelled"));
    assert_ne!(key(5, "processing"), key(6, "processing"));
}

#[tokio::test]
async fn webhook_other_topics_are_ignored_and_bad_json_refused() {
    let wc = webhook_connector();
    let body = br#"{"id":22,"stock_quantity":3}"#;
    let signature = sign(body);
    assert_eq!(
        wc.webhook(&headers(Some("product.updated"), Some(&signature)), body),
        Ok(WebhookAction::Ignored {
            topic: "product.updated".into()
        })
    );
    let bad = b"{\"id\": 1, \"status\": ";
    let signature = sign(bad);
    assert!(matches!(
        wc.webhook(&headers(Some("order.updated"), Some(&signature)), bad),
        Err(WebhookError::BadPayload(_))
    ));
    let no_status = br#"{"id":3}"#;
    let signature = sign(no_status);
    assert!(matches!(
        wc.webhook(&headers(Some("order.created"), Some(&signature)), no_status),
        Err(WebhookError::BadPayload(_))
    ));
    // Ids as strings are read too.
    let stringy = br#"{"id":"77","status":"processing","line_items":[{"id":"5","product_id":"40","variation_id":"41","sku":null,"quantity":1}]}"#;
    let signature = sign(stringy);
    let Ok(WebhookAction::Order(change)) =
        wc.webhook(&headers(Some("order.created"), Some(&signature)), stringy)
    else {
        panic!("expected an order");
    };
    assert_eq!(change.dedup_key, "77:processing");
    assert_eq!(
        change.lines[0].keys,
        vec![
            ("variation_id".to_owned(), "41".to_owned()),
            ("product_id".to_owned(), "40".to_owned()),
        ]
    );
}

// ---------------------------------------------------------------------------
// Order poll.

/// A shop with `n` processing orders, 100 modified in each second from
/// 04:00:00, answering `GET /orders` as WooCommerce does: modified strictly
/// after `modified_after`, oldest first, 100 a page.
fn order_shop(n: u64) -> Arc<Fake> {
    Fake::new(move |req, _| {
        assert_eq!(path(&req.url), "/wp-json/wc/v3/orders");
        assert_eq!(param(&req.url, "orderby").as_deref(), Some("modified"));
        assert_eq!(param(&req.url, "order").as_deref(), Some("asc"));
        assert_eq!(param(&req.url, "dates_are_gmt").as_deref(), Some("true"));
        let after = param(&req.url, "modified_after").expect("modified_after");
        let page: usize = param(&req.url, "page").expect("page").parse().expect("n");
        let modified = |id: u64| format!("2026-12-06T04:00:{:02}", id / 100);
        let matching: Vec<Value> = (1..=n)
            .filter(|id| modified(*id) > after)
            .map(|id| {
                json!({"id": id, "status": "processing", "date_modified_gmt": modified(id),
                       "line_items": [{"id": id, "product_id": 5, "variation_id": 0,
                                       "sku": "A", "quantity": 1}]})
            })
            .collect();
        let pages = matching.len().div_ceil(100).to_string();
        let items: Vec<Value> = matching
            .into_iter()
            .skip((page - 1) * 100)
            .take(100)
            .collect();
        Ok(response(
            200,
            &[("x-wp-totalpages", pages.as_str())],
            &Value::Array(items),
        ))
    })
}

fn poll_config() -> Config {
    Config {
        order_poll_interval: Some(Duration::from_secs(60)),
        ..config(HTTPS_SITE)
    }
}

#[tokio::test]
async fn a_poll_that_stops_at_its_page_bound_goes_on_where_it_stopped() {
    // 1,500 orders within 15 seconds: more than one poll reads (10 pages).
    let fake = order_shop(1_500);
    let woo = WooCommerce::new(poll_config(), fake.clone());
    let first = woo
        .poll_orders(Some("2026-12-06T03:59:00"))
        .await
        .expect("poll");
    assert_eq!(first.changes.len(), 1_000);
    assert_eq!(first.cursor.as_deref(), Some("2026-12-06T04:00:10Z more"));
    assert_eq!(first.next_poll_after, Duration::ZERO);
    // The next poll starts a second before the newest order seen, not a
    // minute (which would read the same thousand orders again, forever).
    let second = woo
        .poll_orders(first.cursor.as_deref())
        .await
        .expect("poll");
    let seen: std::collections::BTreeSet<String> = first
        .changes
        .iter()
        .chain(&second.changes)
        .map(|c| c.order_id.clone())
        .collect();
    assert_eq!(seen.len(), 1_500);
    assert_eq!(second.cursor.as_deref(), Some("2026-12-06T04:00:15Z"));
    assert_eq!(second.next_poll_after, Duration::from_secs(60));
    let requests = fake.requests();
    assert_eq!(
        param(&requests[10].1.url, "modified_after").as_deref(),
        Some("2026-12-06T04:00:09")
    );
    // Each change is what the order's webhook would have said.
    let change = &second.changes[0];
    assert_eq!(change.kind, OrderChangeKind::Placed);
    assert_eq!(change.dedup_key, format!("{}:processing", change.order_id));
}

#[tokio::test]
async fn without_a_poll_interval_the_connector_does_not_poll() {
    let fake = order_shop(10);
    let woo = WooCommerce::new(config(HTTPS_SITE), fake.clone());
    assert!(!woo.polls_orders());
    assert!(WooCommerce::new(poll_config(), fake.clone()).polls_orders());
}
