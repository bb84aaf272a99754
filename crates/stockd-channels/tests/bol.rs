//! bol.com connector against an in-memory transport that plays the Retailer
//! API (channel notes §1), with request bodies checked against the official
//! schemas (retailer-v10.json, offers-v11.yaml).

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::bol::{
    stock_amount, Bol, Config, OffersApi, RateLimit, RateLimits, MEDIA_V10, MEDIA_V11,
};
use stockd_channels::{
    Availability, ChannelError, Connector, ErrorClass, External, HttpRequest, HttpResponse,
    ItemOutcome, LevelQuery, OrderChange, OrderChangeKind, OrderLineRef, PushItem, Submitted,
    Transport, WebhookError,
};
use tokio::time::Instant;

const API: &str = "https://api.bol.test";
const LOGIN: &str = "https://login.bol.test";
const OFFER_A: &str = "6ff736b5-cdd0-4150-8c67-78269ee986f5";
const OFFER_B: &str = "0c6573a2-a80c-48b7-a03e-d5939f1173fa";

// ---------------------------------------------------------------------------
// Schemas.

fn spec_text(name: &str) -> String {
    let path = format!("{}/../../specs/bol/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("spec file {path} missing: {e}"))
}

fn v10_spec() -> Value {
    serde_json::from_str(&spec_text("retailer-v10.json")).expect("retailer-v10.json parses")
}

/// A small YAML reader for the block style of offers-v11.yaml: mappings,
/// sequences (`- x`, `- k: v`), flow sequences, quoted and folded plain
/// scalars. Enough for its `components.schemas`.
fn yaml(text: &str) -> Value {
    let mut lines: Vec<(usize, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| (l.len() - l.trim_start().len(), l.trim().to_owned()))
        .collect();
    let mut pos = 0;
    yaml_node(&mut lines, &mut pos, 0)
}

fn yaml_key(text: &str) -> Option<(String, String)> {
    let (key, rest) = if let Some(i) = text.find(": ") {
        (&text[..i], text[i + 2..].trim())
    } else if let Some(key) = text.strip_suffix(':') {
        (key, "")
    } else {
        return None;
    };
    if key.is_empty() || key.contains(' ') && !key.starts_with('\'') {
        return None;
    }
    Some((
        key.trim_matches('\'').trim_matches('"').to_owned(),
        rest.to_owned(),
    ))
}

fn yaml_scalar(text: &str) -> Value {
    let t = text.trim();
    if t.len() >= 2
        && (t.starts_with('\'') && t.ends_with('\'') || t.starts_with('"') && t.ends_with('"'))
    {
        return Value::String(t[1..t.len() - 1].to_owned());
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Value::Array(
            inner
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(yaml_scalar)
                .collect(),
        );
    }
    match t {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" | "~" => return Value::Null,
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = t.parse::<f64>() {
        return json!(f);
    }
    Value::String(t.to_owned())
}

fn yaml_node(lines: &mut Vec<(usize, String)>, pos: &mut usize, min: usize) -> Value {
    let Some((indent, text)) = lines.get(*pos).cloned() else {
        return Value::Null;
    };
    if indent < min {
        return Value::Null;
    }
    if text.starts_with('-') {
        yaml_seq(lines, pos, indent)
    } else {
        yaml_map(lines, pos, indent)
    }
}

fn yaml_seq(lines: &mut Vec<(usize, String)>, pos: &mut usize, indent: usize) -> Value {
    let mut items = Vec::new();
    while *pos < lines.len() && lines[*pos].0 == indent && lines[*pos].1.starts_with('-') {
        let rest = lines[*pos].1[1..].trim_start().to_owned();
        if rest.is_empty() {
            *pos += 1;
            items.push(yaml_node(lines, pos, indent + 1));
        } else if yaml_key(&rest).is_some() {
            lines[*pos] = (indent + 2, rest);
            items.push(yaml_map(lines, pos, indent + 2));
        } else {
            *pos += 1;
            items.push(yaml_scalar(&rest));
        }
    }
    Value::Array(items)
}

fn yaml_map(lines: &mut Vec<(usize, String)>, pos: &mut usize, indent: usize) -> Value {
    let mut map = Map::new();
    while *pos < lines.len() && lines[*pos].0 == indent && !lines[*pos].1.starts_with('-') {
        let text = lines[*pos].1.clone();
        *pos += 1;
        let Some((key, value)) = yaml_key(&text) else {
            continue;
        };
        if value.is_empty() {
            let nested = *pos < lines.len()
                && (lines[*pos].0 > indent
                    || lines[*pos].0 == indent && lines[*pos].1.starts_with('-'));
            let child = if nested {
                let child_indent = lines[*pos].0;
                yaml_node(lines, pos, child_indent)
            } else {
                Value::Null
            };
            map.insert(key, child);
        } else {
            // Folded plain scalar: deeper lines continue it.
            let mut folded = value;
            while *pos < lines.len() && lines[*pos].0 > indent {
                folded.push(' ');
                folded.push_str(&lines[*pos].1);
                *pos += 1;
            }
            map.insert(key, yaml_scalar(&folded));
        }
    }
    Value::Object(map)
}

fn v11_spec() -> Value {
    yaml(&spec_text("offers-v11.yaml"))
}

/// Checks `value` against an OpenAPI 3.0 schema: `$ref`, `allOf`, types,
/// `required`, unknown properties, `nullable`, bounds, lengths and enums.
fn check(root: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let Some(name) = reference.strip_prefix("#/components/schemas/") else {
            errors.push(format!("{path}: unsupported $ref {reference}"));
            return;
        };
        match root.pointer(&format!("/components/schemas/{name}")) {
            Some(target) => check(root, target, value, path, errors),
            None => errors.push(format!("{path}: $ref {reference} not in the spec")),
        }
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check(root, part, value, path, errors);
        }
    }
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{path}: null not allowed"));
        }
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(object) = value.as_object() else {
                errors.push(format!("{path}: expected object"));
                return;
            };
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(required) {
                    errors.push(format!("{path}.{required}: required"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, field) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => check(root, sub, field, &format!("{path}.{key}"), errors),
                    None => errors.push(format!("{path}.{key}: not in the schema")),
                }
            }
        }
        Some("integer") => match value.as_i64() {
            Some(n) => {
                if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                    if (n as f64) < min {
                        errors.push(format!("{path}: {n} below minimum {min}"));
                    }
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                    if (n as f64) > max {
                        errors.push(format!("{path}: {n} above maximum {max}"));
                    }
                }
                if schema.get("format").and_then(Value::as_str) == Some("int32")
                    && i32::try_from(n).is_err()
                {
                    errors.push(format!("{path}: {n} not int32"));
                }
            }
            None => errors.push(format!("{path}: expected integer, got {value}")),
        },
        Some("number") if !value.is_number() => {
            errors.push(format!("{path}: expected number"));
        }
        Some("boolean") if !value.is_boolean() => {
            errors.push(format!("{path}: expected boolean, got {value}"));
        }
        Some("string") => match value.as_str() {
            Some(s) => {
                if let Some(options) = schema.get("enum").and_then(Value::as_array) {
                    if !options.iter().any(|o| o.as_str() == Some(s)) {
                        errors.push(format!("{path}: {s} not in enum"));
                    }
                }
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                    if s.chars().count() as u64 > max {
                        errors.push(format!("{path}: longer than {max}"));
                    }
                }
            }
            None => errors.push(format!("{path}: expected string")),
        },
        Some("array") => match value.as_array() {
            Some(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        check(root, item_schema, item, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            None => errors.push(format!("{path}: expected array")),
        },
        _ => {}
    }
}

fn schema_errors(root: &Value, name: &str, value: &Value) -> Vec<String> {
    let schema = root
        .pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("schema {name} missing from the spec"));
    let mut errors = Vec::new();
    check(root, schema, value, "$", &mut errors);
    errors
}

// ---------------------------------------------------------------------------
// The fake bol.

#[derive(Debug, Clone, PartialEq)]
enum End {
    Success,
    Failure(&'static str),
    Timeout,
    /// The status answers 404; the stock is applied when `true`.
    Expired(bool),
    /// Never leaves PENDING.
    Never,
}

struct Process {
    offer: String,
    amount: i64,
    pending_reads: usize,
    end: End,
}

struct State {
    expires_in: u64,
    tokens: Vec<(Instant, String)>,
    revoked: HashSet<String>,
    offers: HashMap<String, i64>,
    processes: HashMap<String, Process>,
    next_process: u64,
    /// Outcome of the next stock PUTs: (PENDING reads, end); default (1, Success).
    scripts: VecDeque<(usize, End)>,
    /// One-shot answers for requests whose `METHOD path` starts with the key.
    one_shot: Vec<(String, HttpResponse)>,
    /// `query` → orders of that page.
    order_pages: HashMap<String, Value>,
    order_details: HashMap<String, Value>,
    /// `query` → returns of that page.
    return_pages: HashMap<String, Value>,
    errors: Vec<String>,
}

struct Fake {
    v10: Value,
    v11: Value,
    state: Mutex<State>,
    log: Mutex<Vec<(Instant, HttpRequest)>>,
}

fn response(status: u16, headers: &[(&str, &str)], body: Option<&Value>) -> HttpResponse {
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
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    }
}

fn problem(status: u16, detail: &str, violations: &[String]) -> HttpResponse {
    let violations: Vec<Value> = violations
        .iter()
        .map(|v| json!({"name": "body", "reason": v}))
        .collect();
    response(
        status,
        &[("content-type", MEDIA_V10)],
        Some(&json!({
            "type": "https://api.bol.com/problems",
            "title": "Error validating request.",
            "status": status,
            "detail": detail,
            "violations": violations,
        })),
    )
}

fn process_body(id: &str, offer: &str, status: &str, error: Option<&str>) -> Value {
    json!({
        "processStatusId": id,
        "entityId": offer,
        "eventType": "UPDATE_OFFER_STOCK",
        "description": format!("Update stock for offer {offer}"),
        "status": status,
        "errorMessage": error,
        "createTimestamp": "2026-05-01T10:00:00+02:00",
        "links": [{"rel": "self", "href": format!("{API}/shared/process-status/{id}")}],
    })
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            v10: v10_spec(),
            v11: v11_spec(),
            state: Mutex::new(State {
                expires_in: 299,
                tokens: Vec::new(),
                revoked: HashSet::new(),
                offers: HashMap::from([(OFFER_A.to_owned(), 3), (OFFER_B.to_owned(), 4)]),
                processes: HashMap::new(),
                next_process: 1000,
                scripts: VecDeque::new(),
                one_shot: Vec::new(),
                order_pages: HashMap::new(),
                order_details: HashMap::new(),
                return_pages: HashMap::new(),
                errors: Vec::new(),
            }),
            log: Mutex::new(Vec::new()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("state lock")
    }

    fn requests(&self) -> Vec<(Instant, HttpRequest)> {
        self.log.lock().expect("log lock").clone()
    }

    /// Requests other than the token's, as `METHOD url`.
    fn api_calls(&self) -> Vec<(Instant, String)> {
        self.requests()
            .into_iter()
            .filter(|(_, r)| !r.url.starts_with(LOGIN))
            .map(|(t, r)| (t, format!("{} {}", r.method, r.url)))
            .collect()
    }

    fn token_calls(&self) -> Vec<Instant> {
        self.requests()
            .into_iter()
            .filter(|(_, r)| r.url.starts_with(LOGIN))
            .map(|(t, _)| t)
            .collect()
    }

    fn script(&self, pending_reads: usize, end: End) {
        self.state().scripts.push_back((pending_reads, end));
    }

    fn once(&self, prefix: &str, answer: HttpResponse) {
        self.state().one_shot.push((prefix.to_owned(), answer));
    }

    fn assert_clean(&self) {
        let errors = self.state().errors.clone();
        assert!(
            errors.is_empty(),
            "protocol errors seen by the fake: {errors:?}"
        );
    }

    fn token(&self, request: &HttpRequest) -> HttpResponse {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("client-1:secret-1")
        );
        let mut state = self.state();
        if request.method != http::Method::POST
            || header(request, "authorization") != Some(expected.as_str())
            || header(request, "content-type") != Some("application/x-www-form-urlencoded")
            || request.body != b"grant_type=client_credentials"
        {
            state.errors.push(format!("bad token request {request:?}"));
            return response(401, &[], Some(&json!({"error": "invalid_client"})));
        }
        let token = format!("jwt-{}", state.tokens.len() + 1);
        state.tokens.push((Instant::now(), token.clone()));
        let expires_in = state.expires_in;
        response(
            200,
            &[("content-type", "application/json")],
            Some(&json!({"access_token": token, "token_type": "Bearer",
                          "expires_in": expires_in, "scope": "RETAILER"})),
        )
    }

    fn api(&self, request: &HttpRequest) -> HttpResponse {
        let path_query = request
            .url
            .strip_prefix(API)
            .unwrap_or(&request.url)
            .to_owned();
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (path_query.clone(), String::new()),
        };
        let line = format!("{} {}", request.method, path);
        let mut state = self.state();

        // Auth and media types (§1.2, §1.3).
        let bearer = header(request, "authorization").and_then(|v| v.strip_prefix("Bearer "));
        let token_ok = bearer.is_some_and(|t| {
            state.tokens.iter().any(|(at, tok)| {
                tok == t
                    && !state.revoked.contains(t)
                    && at.elapsed() < Duration::from_secs(state.expires_in)
            })
        });
        if !token_ok {
            return problem(401, "Unauthorized", &[]);
        }
        let media = if path.starts_with("/retailer/offers")
            && header(request, "accept") == Some(MEDIA_V11)
        {
            MEDIA_V11
        } else {
            MEDIA_V10
        };
        if header(request, "accept") != Some(media) {
            state
                .errors
                .push(format!("{line}: Accept {:?}", header(request, "accept")));
            return problem(406, "Not acceptable", &[]);
        }
        if !request.body.is_empty() && header(request, "content-type") != Some(media) {
            state.errors.push(format!("{line}: Content-Type"));
            return problem(415, "Unsupported media type", &[]);
        }

        if let Some(i) = state.one_shot.iter().position(|(p, _)| line.starts_with(p)) {
            return state.one_shot.remove(i).1;
        }

        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("PUT", ["retailer", "offers", offer, "stock"]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let violations = schema_errors(&self.v10, "UpdateOfferStockRequest", &body);
                if !violations.is_empty() {
                    state.errors.push(format!("{line}: {violations:?}"));
                    return problem(400, "Bad request", &violations);
                }
                if !state.offers.contains_key(*offer) {
                    return problem(404, "Offer not found", &[]);
                }
                let (pending_reads, end) = state.scripts.pop_front().unwrap_or((1, End::Success));
                state.next_process += 1;
                let id = state.next_process.to_string();
                let amount = body["amount"].as_i64().unwrap_or(-1);
                state.processes.insert(
                    id.clone(),
                    Process {
                        offer: offer.to_string(),
                        amount,
                        pending_reads,
                        end,
                    },
                );
                response(202, &[], Some(&process_body(&id, offer, "PENDING", None)))
            }
            ("GET", ["shared", "process-status", id]) => {
                let id = id.to_string();
                let Some(process) = state.processes.get_mut(&id) else {
                    return problem(404, "Process status not found", &[]);
                };
                if process.pending_reads > 0 || process.end == End::Never {
                    process.pending_reads = process.pending_reads.saturating_sub(1);
                    let body = process_body(&id, &process.offer, "PENDING", None);
                    return response(200, &[], Some(&body));
                }
                let (offer, amount, end) =
                    (process.offer.clone(), process.amount, process.end.clone());
                let body = match end {
                    End::Success => {
                        state.offers.insert(offer.clone(), amount);
                        process_body(&id, &offer, "SUCCESS", None)
                    }
                    End::Failure(message) => process_body(&id, &offer, "FAILURE", Some(message)),
                    End::Timeout => process_body(&id, &offer, "TIMEOUT", None),
                    End::Expired(applied) => {
                        if applied {
                            state.offers.insert(offer, amount);
                        }
                        state.processes.remove(&id);
                        return problem(404, "Process status not found", &[]);
                    }
                    End::Never => unreachable!("handled above"),
                };
                response(200, &[], Some(&body))
            }
            ("PATCH", ["retailer", "offers", offer]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let violations = schema_errors(&self.v11, "PatchOfferRequest", &body);
                if !violations.is_empty() || media != MEDIA_V11 {
                    state.errors.push(format!("{line}: {violations:?}"));
                    return problem(400, "Bad request", &violations);
                }
                if !state.offers.contains_key(*offer) {
                    return problem(404, "Offer not found", &[]);
                }
                let amount = body["stock"]["amount"].as_i64().unwrap_or(-1);
                state.offers.insert(offer.to_string(), amount);
                response(204, &[], None)
            }
            ("GET", ["retailer", "offers", offer]) => match state.offers.get(*offer) {
                Some(amount) => response(
                    200,
                    &[],
                    Some(&json!({"offerId": offer, "ean": "8712345678906",
                        "stock": {"amount": amount, "correctedStock": amount - 1,
                                  "managedByRetailer": true}})),
                ),
                None => problem(404, "Offer not found", &[]),
            },
            ("GET", ["retailer", "orders"]) => {
                let page = state.order_pages.get(&query).cloned();
                response(
                    200,
                    &[],
                    Some(&page.unwrap_or_else(|| json!({"orders": []}))),
                )
            }
            ("GET", ["retailer", "returns"]) => {
                let page = state.return_pages.get(&query).cloned();
                let page = page.unwrap_or_else(|| json!({"returns": []}));
                let violations = schema_errors(&self.v10, "ReturnsResponse", &page);
                if !violations.is_empty() {
                    state.errors.push(format!("{line}: {violations:?}"));
                }
                response(200, &[], Some(&page))
            }
            ("GET", ["retailer", "orders", id]) => match state.order_details.get(*id) {
                Some(detail) => response(200, &[], Some(detail)),
                None => problem(404, "Order not found", &[]),
            },
            _ => {
                state.errors.push(format!("unexpected {line}"));
                problem(404, "Not found", &[])
            }
        }
    }
}

#[async_trait]
impl Transport for Fake {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        self.log
            .lock()
            .expect("log lock")
            .push((Instant::now(), request.clone()));
        if request.url.starts_with(&format!("{LOGIN}/token")) {
            Ok(self.token(&request))
        } else {
            Ok(self.api(&request))
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn config(api: OffersApi) -> Config {
    Config {
        api_url: API.to_owned(),
        login_url: LOGIN.to_owned(),
        client_id: "client-1".to_owned(),
        client_secret: "secret-1".to_owned(),
        offers_api: api,
        process_poll_interval: Duration::from_secs(2),
        process_timeout: Duration::from_secs(30),
        ..Config::default()
    }
}

fn external(offer: &str) -> External {
    let mut map = External::new();
    map.insert("offer_id".into(), json!(offer));
    map.insert("ean".into(), json!("8712345678906"));
    map
}

fn item(offer: &str, quantity: i64) -> PushItem {
    PushItem {
        sku: format!("SKU-{offer}"),
        external: external(offer),
        quantity,
        availability: Availability::InStock,
        eta: None,
        believed: None,
        idempotency_key: format!("key-{offer}-{quantity}"),
        reference: "stockd://ledger/1".into(),
    }
}

fn failed(outcome: &ItemOutcome) -> &ChannelError {
    match outcome {
        ItemOutcome::Failed(error) => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn fixed_clock(at: DateTime<Utc>) -> stockd_channels::bol::Clock {
    Arc::new(move || at)
}

// ---------------------------------------------------------------------------
// Schema reading (the checker must be able to fail).

#[test]
fn schema_checker_reads_both_specs_and_rejects_bad_bodies() {
    let v10 = v10_spec();
    assert!(schema_errors(
        &v10,
        "UpdateOfferStockRequest",
        &json!({"amount": 6, "managedByRetailer": true})
    )
    .is_empty());
    assert!(!schema_errors(
        &v10,
        "UpdateOfferStockRequest",
        &json!({"amount": 1000, "managedByRetailer": true})
    )
    .is_empty());
    assert!(!schema_errors(
        &v10,
        "UpdateOfferStockRequest",
        &json!({"amount": -1, "managedByRetailer": true})
    )
    .is_empty());
    assert!(!schema_errors(&v10, "UpdateOfferStockRequest", &json!({"amount": 5})).is_empty());
    assert!(!schema_errors(
        &v10,
        "UpdateOfferStockRequest",
        &json!({"amount": "5", "managedByRetailer": true})
    )
    .is_empty());

    let v11 = v11_spec();
    assert_eq!(
        v11.pointer("/components/schemas/UpdateStock/properties/amount/type"),
        Some(&json!("integer"))
    );
    assert!(schema_errors(
        &v11,
        "PatchOfferRequest",
        &json!({"stock": {"amount": 7, "managedByRetailer": true}})
    )
    .is_empty());
    assert!(!schema_errors(
        &v11,
        "PatchOfferRequest",
        &json!({"stock": {"amount": true}})
    )
    .is_empty());
    assert!(!schema_errors(&v11, "PatchOfferRequest", &json!({"stok": {"amount": 1}})).is_empty());
}

#[test]
fn stock_amount_is_capped_to_the_v10_bounds() {
    assert_eq!(stock_amount(1500), 999);
    assert_eq!(stock_amount(999), 999);
    assert_eq!(stock_amount(-4), 0);
    assert_eq!(stock_amount(12), 12);
}

// ---------------------------------------------------------------------------
// Auth.

#[tokio::test(start_paused = true)]
async fn one_token_for_many_pushes_renewed_before_expiry() {
    let fake = Fake::new();
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let start = Instant::now();
    for q in 1..=5 {
        let out = bol.push(&[item(OFFER_A, q)]).await.expect("push");
        assert_eq!(out, vec![ItemOutcome::Applied { quantity: q }]);
    }
    assert_eq!(fake.token_calls().len(), 1, "token reused across calls");

    // Past the renewal point (299 s − 30 s) but before expiry.
    tokio::time::advance(Duration::from_secs(275) - start.elapsed()).await;
    bol.push(&[item(OFFER_A, 9)]).await.expect("push");
    let calls = fake.token_calls();
    assert_eq!(calls.len(), 2, "renewed once near expiry");
    let renewed = calls[1] - start;
    assert!(renewed >= Duration::from_secs(269) && renewed < Duration::from_secs(299));
    // Every API call went out with a live token: no 401 was needed.
    assert!(fake.requests().iter().all(|(_, r)| r.url.starts_with(LOGIN)
        || header(r, "authorization").is_some_and(|a| a.starts_with("Bearer jwt-"))));
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_renewed_once_and_the_call_retried() {
    let fake = Fake::new();
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    bol.push(&[item(OFFER_A, 1)]).await.expect("push");
    fake.state().revoked.insert("jwt-1".into());
    let out = bol.push(&[item(OFFER_A, 2)]).await.expect("push");
    assert_eq!(out, vec![ItemOutcome::Applied { quantity: 2 }]);
    assert_eq!(fake.token_calls().len(), 2);

    // A token bol keeps refusing: the item fails, no endless loop.
    fake.state().revoked.insert("jwt-2".into());
    fake.state().revoked.insert("jwt-3".into());
    let out = bol.push(&[item(OFFER_A, 3)]).await.expect("push");
    assert_eq!(failed(&out[0]).code, "unauthorized");
    assert_eq!(fake.token_calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn bad_credentials_fail_the_whole_call() {
    let fake = Fake::new();
    let mut cfg = config(OffersApi::V10);
    cfg.client_secret = "wrong".into();
    let bol = Bol::new(cfg, fake.clone());
    let error = bol
        .push(&[item(OFFER_A, 1), item(OFFER_B, 2)])
        .await
        .expect_err("no token");
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(error.code, "auth_failed");
    assert_eq!(
        fake.token_calls().len(),
        1,
        "no retry storm on the token endpoint"
    );
}

// ---------------------------------------------------------------------------
// Push v10.

#[tokio::test(start_paused = true)]
async fn v10_put_uses_media_type_cap_and_managed_by_retailer() {
    let fake = Fake::new();
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let out = bol
        .push(&[item(OFFER_A, 1500), item(OFFER_B, -2)])
        .await
        .expect("push");
    assert_eq!(
        out,
        vec![
            ItemOutcome::Applied { quantity: 999 },
            ItemOutcome::Applied { quantity: 0 }
        ]
    );
    let puts: Vec<HttpRequest> = fake
        .requests()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.method == http::Method::PUT)
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(
        puts[0].url,
        format!("{API}/retailer/offers/{OFFER_A}/stock")
    );
    let v10 = v10_spec();
    for (put, amount) in puts.iter().zip([999, 0]) {
        assert_eq!(header(put, "accept"), Some(MEDIA_V10));
        assert_eq!(header(put, "content-type"), Some(MEDIA_V10));
        let body: Value = serde_json::from_slice(&put.body).expect("json body");
        assert_eq!(body, json!({"amount": amount, "managedByRetailer": true}));
        assert!(schema_errors(&v10, "UpdateOfferStockRequest", &body).is_empty());
    }
    assert_eq!(fake.state().offers[OFFER_A], 999);
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn process_status_is_followed_to_success_at_the_poll_interval() {
    let fake = Fake::new();
    fake.script(2, End::Success);
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let start = Instant::now();
    let out = bol.push(&[item(OFFER_A, 8)]).await.expect("push");
    assert_eq!(out, vec![ItemOutcome::Applied { quantity: 8 }]);
    let calls = fake.api_calls();
    let status_reads: Vec<Duration> = calls
        .iter()
        .filter(|(_, c)| c.contains("/shared/process-status/"))
        .map(|(t, _)| *t - start)
        .collect();
    assert_eq!(
        status_reads,
        vec![
            Duration::from_secs(2),
            Duration::from_secs(4),
            Duration::from_secs(6)
        ]
    );
    assert!(calls[1]
        .1
        .starts_with(&format!("GET {API}/shared/process-status/")));
    assert_eq!(fake.state().offers[OFFER_A], 8);
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn process_failure_is_permanent_and_timeout_retryable() {
    let fake = Fake::new();
    fake.script(0, End::Failure("Offer is blocked"));
    fake.script(1, End::Timeout);
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let out = bol
        .push(&[item(OFFER_A, 5), item(OFFER_B, 6)])
        .await
        .expect("push");
    let failure = failed(&out[0]);
    assert_eq!(failure.class, ErrorClass::Permanent);
    assert_eq!(failure.code, "process_failure");
    assert!(failure.message.contains("Offer is blocked"), "{failure:?}");
    let timeout = failed(&out[1]);
    assert_eq!(timeout.class, ErrorClass::Retryable);
    assert_eq!(timeout.code, "process_timeout");
    assert_eq!(fake.state().offers[OFFER_A], 3, "nothing applied");
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn an_expired_status_is_decided_by_reading_the_offer_back() {
    let fake = Fake::new();
    fake.script(1, End::Expired(true));
    fake.script(1, End::Expired(false));
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let out = bol
        .push(&[item(OFFER_A, 11), item(OFFER_B, 12)])
        .await
        .expect("push");
    assert_eq!(out[0], ItemOutcome::Applied { quantity: 11 });
    let unknown = failed(&out[1]);
    assert_eq!(unknown.class, ErrorClass::Retryable);
    assert_eq!(unknown.code, "process_status_expired");
    assert_eq!(unknown.current, Some(4));
    let reads = fake
        .api_calls()
        .into_iter()
        .filter(|(_, c)| c.starts_with(&format!("GET {API}/retailer/offers/")))
        .count();
    assert_eq!(reads, 2);
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn still_pending_at_the_timeout_is_retryable_pending() {
    let fake = Fake::new();
    fake.script(0, End::Never);
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let start = Instant::now();
    let out = bol.push(&[item(OFFER_A, 5)]).await.expect("push");
    let error = failed(&out[0]);
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Retryable, "pending")
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(30),
        "bounded by process_timeout"
    );
    let reads = fake
        .api_calls()
        .into_iter()
        .filter(|(_, c)| c.contains("process-status"))
        .count();
    assert_eq!(reads, 15, "one read per 2 s interval");
}

#[tokio::test(start_paused = true)]
async fn channel_errors_are_classified() {
    let fake = Fake::new();
    fake.once(
        "PUT /retailer/offers/",
        problem(
            400,
            "Offer is not valid",
            &["amount: out of range".to_owned()],
        ),
    );
    fake.once(
        "PUT /retailer/offers/",
        problem(503, "Service unavailable", &[]),
    );
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let unknown = "11111111-2222-3333-4444-555555555555";
    let out = bol
        .push(&[item(OFFER_A, 1), item(OFFER_B, 2), item(unknown, 3)])
        .await
        .expect("push");
    let bad = failed(&out[0]);
    assert_eq!((bad.class, bad.status), (ErrorClass::Permanent, Some(400)));
    assert!(bad.message.contains("Offer is not valid") && bad.message.contains("out of range"));
    assert_eq!(failed(&out[1]).class, ErrorClass::Retryable);
    let missing = failed(&out[2]);
    assert_eq!(
        (missing.class, missing.code.as_str()),
        (ErrorClass::Permanent, "not_found")
    );

    let mut no_id = item(OFFER_A, 1);
    no_id.external.remove("offer_id");
    let out = bol.push(&[no_id]).await.expect("push");
    assert_eq!(failed(&out[0]).code, "missing_external_id");
}

// ---------------------------------------------------------------------------
// Push v11.

#[tokio::test(start_paused = true)]
async fn v11_patch_is_synchronous() {
    let fake = Fake::new();
    let bol = Bol::new(config(OffersApi::V11), fake.clone());
    let out = bol
        .push(&[item(OFFER_A, 7), item(OFFER_B, 4000)])
        .await
        .expect("push");
    assert_eq!(
        out,
        vec![
            ItemOutcome::Applied { quantity: 7 },
            ItemOutcome::Applied { quantity: 999 }
        ]
    );
    let api: Vec<HttpRequest> = fake
        .requests()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| !r.url.starts_with(LOGIN))
        .collect();
    assert_eq!(api.len(), 2, "no process status in v11");
    assert_eq!(api[0].method, http::Method::PATCH);
    assert_eq!(api[0].url, format!("{API}/retailer/offers/{OFFER_A}"));
    assert_eq!(header(&api[0], "accept"), Some(MEDIA_V11));
    assert_eq!(header(&api[0], "content-type"), Some(MEDIA_V11));
    let body: Value = serde_json::from_slice(&api[0].body).expect("json");
    assert_eq!(
        body,
        json!({"stock": {"amount": 7, "managedByRetailer": true}})
    );
    assert_eq!(fake.state().offers[OFFER_B], 999);
    fake.assert_clean();
}

// ---------------------------------------------------------------------------
// Rate limits.

#[tokio::test(start_paused = true)]
async fn retry_after_is_respected() {
    let fake = Fake::new();
    fake.once(
        "PUT /retailer/offers/",
        response(429, &[("retry-after", "7")], Some(&json!({"status": 429}))),
    );
    let bol = Bol::new(config(OffersApi::V10), fake.clone());
    let start = Instant::now();
    let out = bol
        .push(&[item(OFFER_A, 1), item(OFFER_B, 2)])
        .await
        .expect("push");
    for outcome in &out {
        let error = failed(outcome);
        assert_eq!(error.class, ErrorClass::RateLimited);
        assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    }
    assert_eq!(fake.api_calls().len(), 1, "the rest of the batch waits");

    let out = bol.push(&[item(OFFER_A, 1)]).await.expect("push");
    assert_eq!(out, vec![ItemOutcome::Applied { quantity: 1 }]);
    let calls = fake.api_calls();
    assert!(calls[1].1.starts_with("PUT "));
    assert!(
        calls[1].0 - start >= Duration::from_secs(7),
        "no request before Retry-After"
    );
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn each_endpoint_is_paced_by_its_own_bucket() {
    let fake = Fake::new();
    for _ in 0..6 {
        fake.script(0, End::Success);
    }
    let mut cfg = config(OffersApi::V10);
    cfg.rate_limits = RateLimits {
        offer_stock: RateLimit::per_second(2),
        process_status: RateLimit::per_second(3),
        ..RateLimits::default()
    };
    cfg.process_poll_interval = Duration::from_millis(100);
    let bol = Bol::new(cfg, fake.clone());
    let start = Instant::now();
    let items: Vec<PushItem> = (0..6)
        .map(|i| item(if i % 2 == 0 { OFFER_A } else { OFFER_B }, i))
        .collect();
    let out = bol.push(&items).await.expect("push");
    assert!(
        out.iter().all(|o| matches!(o, ItemOutcome::Applied { .. })),
        "{out:?}"
    );
    let calls = fake.api_calls();
    let puts: Vec<f64> = calls
        .iter()
        .filter(|(_, c)| c.starts_with("PUT"))
        .map(|(t, _)| (*t - start).as_secs_f64())
        .collect();
    // The connector paces a token under each bucket and at 96 % of its
    // rate: one stock PUT at once, then one per 1 / 1.92 s.
    let put_gap = 1.0 / (2.0 * 0.96);
    let expected = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0].map(|n| n * put_gap);
    assert_eq!(puts.len(), 6);
    for (got, want) in puts.iter().zip(expected) {
        assert!((got - want).abs() < 0.01, "PUT times {puts:?}");
    }
    // Status reads: their own bucket (2 at once, then one per 1 / 2.88 s).
    let reads: Vec<f64> = calls
        .iter()
        .filter(|(_, c)| c.contains("process-status"))
        .map(|(t, _)| (*t - start).as_secs_f64())
        .collect();
    assert_eq!(reads.len(), 6);
    let read_gap = 1.0 / (3.0 * 0.96);
    for (got, offset) in reads
        .iter()
        .zip([0.0, 0.0, 1.0, 2.0, 3.0, 4.0].map(|n| n * read_gap))
    {
        assert!(
            (got - reads[0] - offset).abs() < 0.01,
            "status reads {reads:?}"
        );
    }
    fake.assert_clean();
}

/// Protective and bulk pushes draw on the one stock bucket. A bulk push
/// leaves the protective lane the tokens it needs: decreases submitted
/// while a bulk push saturates the bucket go at the bucket's rate, not at
/// the half of it that equal terms would give them.
#[tokio::test(start_paused = true)]
async fn a_bulk_push_leaves_the_stock_rate_to_protective_pushes() {
    let fake = Fake::new();
    let mut cfg = config(OffersApi::V10);
    cfg.rate_limits = RateLimits {
        offer_stock: RateLimit::per_second(10),
        ..RateLimits::default()
    };
    let bol = Arc::new(Bol::new(cfg, fake.clone()));
    // Lanes as the dispatcher runs them: several pushes under way in each.
    let submit = |offer: &'static str, first: i64, bulk: bool| {
        let bol = bol.clone();
        let items: Vec<PushItem> = (first..first + 5).map(|q| item(offer, q)).collect();
        tokio::spawn(async move { bol.submit(&items, bulk).await })
    };
    let bulk: Vec<_> = (0..4).map(|n| submit(OFFER_A, n * 5, true)).collect();
    // The bulk pushes have emptied the bucket and wait on every token.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let fast: Vec<_> = (0..2)
        .map(|n| submit(OFFER_B, 100 + n * 5, false))
        .collect();
    for push in fast {
        let out = push
            .await
            .expect("protective task")
            .expect("protective submit");
        assert!(
            out.iter().all(|s| matches!(s, Submitted::Accepted { .. })),
            "{out:?}"
        );
    }
    let took = (Instant::now() - start).as_secs_f64();
    // Ten PUTs at 9.6/s take 1.04 s alone; on equal terms with the four
    // bulk pushes (no reserve) they took 1.7 s.
    assert!(took < 1.3, "protective pushes took {took:.2} s");
    let bulk_during = fake
        .api_calls()
        .iter()
        .filter(|(t, c)| *t > start && (*t - start).as_secs_f64() < took && c.contains(OFFER_A))
        .count();
    assert!(
        bulk_during <= 2,
        "{bulk_during} bulk PUTs went while protective ones waited"
    );
    // The bulk pushes still finish, on what protective pushes leave.
    for push in bulk {
        let out = push.await.expect("bulk task").expect("bulk submit");
        assert!(
            out.iter().all(|s| matches!(s, Submitted::Accepted { .. })),
            "{out:?}"
        );
    }
    fake.assert_clean();
}

// ---------------------------------------------------------------------------
// Reads.

#[tokio::test(start_paused = true)]
async fn read_levels_reports_the_stock_amount() {
    for api in [OffersApi::V10, OffersApi::V11] {
        let fake = Fake::new();
        let bol = Bol::new(config(api), fake.clone());
        let unknown = "11111111-2222-3333-4444-555555555555";
        let queries: Vec<LevelQuery> = [OFFER_A, OFFER_B, unknown]
            .iter()
            .map(|o| LevelQuery {
                sku: format!("SKU-{o}"),
                external: external(o),
            })
            .collect();
        let levels = bol.read_levels(&queries).await.expect("read");
        assert_eq!(levels[0].as_ref().expect("level").quantity, Some(3));
        assert_eq!(levels[1].as_ref().expect("level").quantity, Some(4));
        let missing = levels[2].as_ref().expect_err("unknown offer");
        assert_eq!(missing.code, "not_found");
        let media = if api == OffersApi::V10 {
            MEDIA_V10
        } else {
            MEDIA_V11
        };
        for (_, request) in fake
            .requests()
            .iter()
            .filter(|(_, r)| r.url.starts_with(API))
        {
            assert_eq!(request.method, http::Method::GET);
            assert_eq!(header(request, "accept"), Some(media));
        }
        fake.assert_clean();
    }
}

// ---------------------------------------------------------------------------
// Orders.

fn list_item(id: &str, ean: &str, qty: i64, status: &str, cancelled: i64, request: bool) -> Value {
    json!({"orderItemId": id, "ean": ean, "fulfilmentMethod": "FBR", "fulfilmentStatus": status,
           "quantity": qty, "quantityShipped": if status == "HANDLED" && cancelled == 0 { qty } else { 0 },
           "quantityCancelled": cancelled, "cancellationRequest": request,
           "latestChangedDateTime": "2026-05-01T10:00:00+02:00"})
}

fn detail(order: &str, items: &[(&str, &str, Option<&str>, &str)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(id, offer, reference, ean)| {
            json!({"orderItemId": id, "cancellationRequest": false,
                   "offer": {"offerId": offer, "reference": reference},
                   "product": {"ean": ean, "title": "Product"},
                   "quantity": 1, "quantityShipped": 0, "quantityCancelled": 0,
                   "unitPrice": 9.99, "totalPrice": 9.99, "discounts": [], "commission": 1.0,
                   "latestChangedDateTime": "2026-05-01T10:00:00+02:00"})
        })
        .collect();
    json!({"orderId": order, "pickupPoint": false, "shipmentDetails": {}, "orderItems": items})
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("date")
}

#[tokio::test(start_paused = true)]
async fn first_poll_lists_open_orders_and_maps_items_through_the_detail() {
    let fake = Fake::new();
    {
        let mut state = fake.state();
        state.order_pages.insert(
            "page=1&fulfilment-method=FBR&status=OPEN".into(),
            json!({"orders": [
                {"orderId": "A1", "orderPlacedDateTime": "2026-05-01T10:00:00+02:00",
                 "orderItems": [list_item("11", "8712345678906", 2, "OPEN", 0, false),
                                list_item("12", "8712345678913", 1, "OPEN", 0, true)]},
            ]}),
        );
        state.order_pages.insert(
            "page=1&fulfilment-method=FBR&status=ALL&change-interval-minute=60".into(),
            json!({"orders": [
                {"orderId": "A1", "orderPlacedDateTime": "2026-05-01T10:00:00+02:00",
                 "orderItems": [list_item("11", "8712345678906", 2, "OPEN", 0, false)]},
                {"orderId": "B2", "orderPlacedDateTime": "2026-05-01T10:30:00+02:00",
                 "orderItems": [list_item("21", "8712345678920", 3, "HANDLED", 3, false),
                                list_item("22", "8712345678937", 1, "HANDLED", 0, false)]},
            ]}),
        );
        state.order_details.insert(
            "A1".into(),
            detail(
                "A1",
                &[
                    ("11", OFFER_A, Some("TEE-1"), "8712345678906"),
                    ("12", OFFER_B, None, "8712345678913"),
                ],
            ),
        );
        state.order_details.insert(
            "B2".into(),
            detail(
                "B2",
                &[
                    ("21", OFFER_A, Some("TEE-1"), "8712345678920"),
                    ("22", OFFER_B, None, "8712345678937"),
                ],
            ),
        );
    }
    let time = Arc::new(Mutex::new(now()));
    let clock_time = time.clone();
    let clock: stockd_channels::bol::Clock =
        Arc::new(move || *clock_time.lock().expect("clock lock"));
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), clock);
    assert!(bol.polls_orders());
    let poll = bol.poll_orders(None).await.expect("poll");

    let summary: Vec<(String, String, OrderChangeKind, i64)> = poll
        .changes
        .iter()
        .map(|c| {
            (
                c.dedup_key.clone(),
                c.order_id.clone(),
                c.kind,
                c.lines[0].qty,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "order-item:11:placed".into(),
                "A1".into(),
                OrderChangeKind::Placed,
                2
            ),
            (
                "order-item:12:placed".into(),
                "A1".into(),
                OrderChangeKind::Placed,
                1
            ),
            (
                "order-item:12:cancelled".into(),
                "A1".into(),
                OrderChangeKind::Cancelled,
                1
            ),
            (
                "order-item:21:placed".into(),
                "B2".into(),
                OrderChangeKind::Placed,
                3
            ),
            (
                "order-item:21:cancelled".into(),
                "B2".into(),
                OrderChangeKind::Cancelled,
                3
            ),
        ]
    );
    let first = &poll.changes[0].lines[0];
    assert_eq!(first.line_id, "11");
    assert_eq!(
        first.keys,
        vec![
            ("offer_id".to_owned(), OFFER_A.to_owned()),
            ("ean".to_owned(), "8712345678906".to_owned()),
            ("sku".to_owned(), "TEE-1".to_owned()),
        ]
    );
    assert_eq!(
        poll.changes[1].lines[0].keys.len(),
        2,
        "no reference → no sku key"
    );
    assert_eq!(poll.cursor.as_deref(), Some("2026-05-01T12:00:00Z"));
    assert_eq!(poll.next_poll_after, Duration::from_secs(60));
    let calls: Vec<String> = fake.api_calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls,
        vec![
            format!("GET {API}/retailer/orders?page=1&fulfilment-method=FBR&status=OPEN"),
            format!("GET {API}/retailer/orders?page=1&fulfilment-method=FBR&status=ALL&change-interval-minute=60"),
            format!("GET {API}/retailer/orders/A1"),
            format!("GET {API}/retailer/orders/B2"),
            format!("GET {API}/retailer/returns?page=1&handled=false&fulfilment-method=FBR"),
        ]
    );

    // The next poll asks for the minutes since this one, and details are
    // not fetched again for items already mapped.
    *time.lock().expect("clock lock") = now() + chrono::Duration::minutes(3);
    fake.state().order_pages.insert(
        "page=1&fulfilment-method=FBR&status=ALL&change-interval-minute=4".into(),
        json!({"orders": [{"orderId": "A1", "orderPlacedDateTime": null,
            "orderItems": [list_item("11", "8712345678906", 2, "HANDLED", 2, false)]}]}),
    );
    let poll = bol
        .poll_orders(Some("2026-05-01T12:00:00Z"))
        .await
        .expect("poll");
    let keys: Vec<&str> = poll.changes.iter().map(|c| c.dedup_key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["order-item:11:placed", "order-item:11:cancelled"]
    );
    assert_eq!(poll.changes[1].lines[0].qty, 2);
    let calls = fake.api_calls();
    assert_eq!(
        calls.len(),
        7,
        "one order list and one return list call, no second detail read: {calls:?}"
    );
    assert_eq!(poll.cursor.as_deref(), Some("2026-05-01T12:03:00Z"));
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn full_pages_are_followed_and_the_list_bucket_paces_polls() {
    let fake = Fake::new();
    let orders: Vec<Value> = (0..50)
        .map(|i| json!({"orderId": format!("O{i}"), "orderPlacedDateTime": null,
                        "orderItems": [list_item(&format!("{i}"), "8712345678906", 1, "OPEN", 0, false)]}))
        .collect();
    fake.state().order_pages.insert(
        "page=1&fulfilment-method=FBR&status=ALL&change-interval-minute=2".into(),
        json!({"orders": orders}),
    );
    // Page 2 is an empty object (the empty-page shape is UNCONFIRMED).
    fake.state().order_pages.insert(
        "page=2&fulfilment-method=FBR&status=ALL&change-interval-minute=2".into(),
        json!({}),
    );
    let mut cfg = config(OffersApi::V10);
    cfg.rate_limits.orders_list = RateLimit::per_minute(2);
    cfg.order_poll_interval = Duration::from_secs(10);
    let bol = Bol::with_clock(cfg, fake.clone(), fixed_clock(now()));
    let cursor = "2026-05-01T11:59:30Z";
    let poll = bol.poll_orders(Some(cursor)).await.expect("poll");
    // Details 404: lines keep the EAN.
    assert_eq!(poll.changes.len(), 50);
    assert_eq!(
        poll.changes[0].lines[0].keys,
        vec![("ean".to_owned(), "8712345678906".to_owned())]
    );
    let lists = fake
        .api_calls()
        .into_iter()
        .filter(|(_, c)| c.contains("/retailer/orders?"))
        .count();
    assert_eq!(lists, 2);
    // Both list tokens spent: the next poll waits for the bucket (30 s).
    assert!(
        poll.next_poll_after > Duration::from_secs(28)
            && poll.next_poll_after <= Duration::from_secs(30),
        "{:?}",
        poll.next_poll_after
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_gap_relists_open_orders_and_each_day_since() {
    let fake = Fake::new();
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), fixed_clock(now()));
    let poll = bol
        .poll_orders(Some("2026-04-29T23:00:00Z"))
        .await
        .expect("poll");
    assert!(poll.changes.is_empty());
    let calls: Vec<String> = fake.api_calls().into_iter().map(|(_, c)| c).collect();
    let base = format!("GET {API}/retailer/orders?page=1&fulfilment-method=FBR");
    assert_eq!(
        calls,
        vec![
            format!("{base}&status=OPEN"),
            format!("{base}&status=ALL&latest-change-date=2026-04-29"),
            format!("{base}&status=ALL&latest-change-date=2026-04-30"),
            format!("{base}&status=ALL&latest-change-date=2026-05-01"),
            format!("GET {API}/retailer/returns?page=1&handled=false&fulfilment-method=FBR"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_order_list_429_is_rate_limited() {
    let fake = Fake::new();
    fake.once(
        "GET /retailer/orders",
        response(429, &[("retry-after", "20")], None),
    );
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), fixed_clock(now()));
    let error = bol.poll_orders(None).await.expect_err("throttled");
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(20)));
    let start = Instant::now();
    bol.poll_orders(None).await.expect("poll");
    let calls = fake.api_calls();
    assert!(calls[1].0 - start >= Duration::from_secs(20));
}

/// Two orders in the last two minutes, each mapped through its detail.
fn two_recent_orders(fake: &Fake) {
    let mut state = fake.state();
    state.order_pages.insert(
        "page=1&fulfilment-method=FBR&status=ALL&change-interval-minute=2".into(),
        json!({"orders": [
            {"orderId": "A1", "orderPlacedDateTime": null,
             "orderItems": [list_item("11", "8712345678906", 1, "OPEN", 0, false)]},
            {"orderId": "B2", "orderPlacedDateTime": null,
             "orderItems": [list_item("21", "8712345678920", 2, "OPEN", 0, false)]},
        ]}),
    );
    state.order_details.insert(
        "A1".into(),
        detail("A1", &[("11", OFFER_A, Some("TEE-1"), "8712345678906")]),
    );
    state.order_details.insert(
        "B2".into(),
        detail("B2", &[("21", OFFER_B, Some("TEE-2"), "8712345678920")]),
    );
}

#[tokio::test(start_paused = true)]
async fn a_5xx_inside_a_poll_is_tried_again_and_the_poll_completes() {
    let fake = Fake::new();
    two_recent_orders(&fake);
    fake.once("GET /retailer/orders/B2", problem(502, "Bad Gateway", &[]));
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), fixed_clock(now()));
    let poll = bol
        .poll_orders(Some("2026-05-01T11:59:30Z"))
        .await
        .expect("poll");
    let keys: Vec<&str> = poll.changes.iter().map(|c| c.dedup_key.as_str()).collect();
    assert_eq!(keys, vec!["order-item:11:placed", "order-item:21:placed"]);
    assert_eq!(poll.cursor.as_deref(), Some("2026-05-01T12:00:00Z"));
    let detail_reads = fake
        .api_calls()
        .iter()
        .filter(|(_, c)| c.ends_with("/retailer/orders/B2"))
        .count();
    assert_eq!(detail_reads, 2);
}

#[tokio::test(start_paused = true)]
async fn a_poll_cut_short_keeps_what_it_read_and_its_cursor() {
    let fake = Fake::new();
    two_recent_orders(&fake);
    for _ in 0..3 {
        fake.once("GET /retailer/orders/B2", problem(503, "Unavailable", &[]));
    }
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), fixed_clock(now()));
    let poll = bol
        .poll_orders(Some("2026-05-01T11:59:30Z"))
        .await
        .expect("what was read is reported");
    let keys: Vec<&str> = poll.changes.iter().map(|c| c.dedup_key.as_str()).collect();
    assert_eq!(keys, vec!["order-item:11:placed"]);
    // B2 is read again next poll: the cursor did not move.
    assert_eq!(poll.cursor.as_deref(), Some("2026-05-01T11:59:30Z"));
    let next = bol
        .poll_orders(poll.cursor.as_deref())
        .await
        .expect("next poll");
    let keys: Vec<&str> = next.changes.iter().map(|c| c.dedup_key.as_str()).collect();
    assert_eq!(keys, vec!["order-item:11:placed", "order-item:21:placed"]);
}

fn returned(rma: &str, order: &str, ean: &str, qty: i64) -> Value {
    json!({"returnId": format!("R{rma}"), "registrationDateTime": "2026-05-01T11:00:00+02:00",
           "fulfilmentMethod": "FBR", "returnItems": [
               {"rmaId": rma, "orderId": order, "ean": ean, "expectedQuantity": qty,
                "returnReason": {"mainReason": "Defect", "customerComments": ""}, "handled": false,
                "processingResults": []}]})
}

#[tokio::test(start_paused = true)]
async fn registered_returns_become_restocked_lines_keyed_by_rma() {
    let fake = Fake::new();
    {
        let mut state = fake.state();
        // A full page of returns is followed by the next one.
        let mut first: Vec<Value> = vec![returned("31234567", "A1", "8712345678913", 2)];
        first.extend((1..50).map(|i| returned(&format!("4{i}"), "GONE", "8712345678906", 1)));
        state.return_pages.insert(
            "page=1&handled=false&fulfilment-method=FBR".into(),
            json!({"returns": first}),
        );
        state.return_pages.insert(
            "page=2&handled=false&fulfilment-method=FBR".into(),
            json!({"returns": [returned("31234599", "A1", "0000000000000", 1)]}),
        );
        state.order_details.insert(
            "A1".into(),
            detail(
                "A1",
                &[
                    ("11", OFFER_A, Some("TEE-1"), "8712345678906"),
                    ("12", OFFER_B, None, "8712345678913"),
                ],
            ),
        );
    }
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), fixed_clock(now()));
    let poll = bol
        .poll_orders(Some("2026-05-01T11:59:30Z"))
        .await
        .expect("poll");
    // The order that bol no longer has and the EAN no line of A1 carries
    // name no line: skipped.
    assert_eq!(
        poll.changes,
        vec![OrderChange {
            dedup_key: "return:31234567".into(),
            order_id: "A1".into(),
            kind: OrderChangeKind::Restocked,
            lines: vec![OrderLineRef {
                line_id: "12".into(),
                keys: vec![
                    ("offer_id".to_owned(), OFFER_B.to_owned()),
                    ("ean".to_owned(), "8712345678913".to_owned()),
                ],
                qty: 2,
            }],
        }]
    );
    // Each order's detail is read once per poll.
    let details: Vec<String> = fake
        .api_calls()
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| c.contains("/retailer/orders/"))
        .collect();
    assert_eq!(
        details,
        vec![
            format!("GET {API}/retailer/orders/A1"),
            format!("GET {API}/retailer/orders/GONE"),
        ]
    );
    // The same unhandled return on the next poll is the same change.
    let again = bol
        .poll_orders(Some("2026-05-01T11:59:30Z"))
        .await
        .expect("poll");
    assert_eq!(again.changes, poll.changes);
    fake.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn a_failed_return_list_does_not_hold_the_orders_back() {
    let fake = Fake::new();
    fake.state().order_pages.insert(
        "page=1&fulfilment-method=FBR&status=ALL&change-interval-minute=2".into(),
        json!({"orders": [{"orderId": "A1", "orderPlacedDateTime": null,
            "orderItems": [list_item("11", "8712345678906", 1, "OPEN", 0, false)]}]}),
    );
    fake.once("GET /retailer/returns", problem(503, "Unavailable", &[]));
    let bol = Bol::with_clock(config(OffersApi::V10), fake.clone(), fixed_clock(now()));
    let poll = bol
        .poll_orders(Some("2026-05-01T11:59:30Z"))
        .await
        .expect("poll");
    let keys: Vec<&str> = poll.changes.iter().map(|c| c.dedup_key.as_str()).collect();
    assert_eq!(keys, vec!["order-item:11:placed"]);
    assert_eq!(poll.cursor.as_deref(), Some("2026-05-01T12:00:00Z"));
}

#[test]
fn webhooks_are_refused() {
    let fake = Fake::new();
    let bol = Bol::new(config(OffersApi::V10), fake);
    assert_eq!(bol.kind(), "bol");
    let result = bol.webhook(&http::HeaderMap::new(), br#"{"resource":"ORDER"}"#);
    assert_eq!(result, Err(WebhookError::BadSignature));
}
