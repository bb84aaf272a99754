//! Google Merchant Center connector against an in-memory Merchant API.

use async_trait::async_trait;
use base64::Engine;
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::gmc::{
    daily_quota_reset_after, int64_value, jwt_assertion, product_segment, Config, Gmc,
    DEFAULT_API_URL, DEFAULT_TOKEN_URL, SCOPE,
};
use stockd_channels::{
    Availability, ChannelError, Connector, ErrorClass, External, HttpRequest, HttpResponse,
    ItemOutcome, LevelQuery, PushItem, Transport, WebhookError,
};
use tokio::time::Instant;

/// A throwaway 2048-bit RSA key (PKCS#8), made for these tests only.
const TEST_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCEmkYd1IwycMQv\n\
+qmCwkmx2KqHYJ+4hiniV7sUS2JhCZ86Dveg93y0uA8FdRBH/Ez0j6Rdh+nXmiIz\n\
sRxSE+B+Asw9b/dXfjTkFMzAOcGSXvUlWRnpcmJXJYQSK/VNW90Wkgav7gce01mT\n\
Po8tPFu8nQSPTzUb3N9a1NXuPH8cJEF3M8FkpG7C5ScKkZtlyR/Z21Bl6b/yOYbf\n\
NSLHo1kX415dxQRUHsLYc5fh2EXKDVBBAH5udmYJRqTt+0ebxdx4WJujW9Ig3iNA\n\
5vgSpoBcvbZDHREqBNELd9mdbcWH7a7YFmwFZTGggvOcpgTD8at180rcWkrSvxUe\n\
aYBar/tvAgMBAAECggEAHqpe1L82vON/O2lIkkjEKjDlHvGlflLolMOdLBBS7AYB\n\
oLedZMhXOqPmNWjhHwSl91jQtiCcX5PxnOq0lfaqz/ltqjeeh8lUCfsVbs7siSEU\n\
qFJ2v5oITAcNB/bKf91iv7l9emodk29lI7wv+FIhFPlq+IlkytDFhof6AWJUMvmK\n\
Qd1cMzIJJH+0HlM1GVebF6nPLALz1ojS+QtisluMNSwYpjzKCxgLlHskhJ7eZlqY\n\
sYTmnChri7UoXhxYAqZ4zuzE7MZT0ozsZrPIFeZQ2umKpXXd/AtgLLRreA3odv6E\n\
aKEW/5xghABcswLUTNsGXgWftAofOsnbV3rBOOGEQQKBgQC5mnoBji22SCLp+7Ey\n\
z6m1CjPr+F3e2nP7Z6vtq36FB3mk0xe8yQXsM8A5yYTmxRUxxWR465EIv+acFz0M\n\
tEXp+vkZvVp8TNF6DsHBnG7sDsE3R2Bm1GSwM6TORpOofO9iiK56gw7g2hBxeVtP\n\
bk5lVMfbW5ztveIhI5YoOkV3ZwKBgQC25ZU63Mbp03S7b6O+7IZx6u87hVxRFr88\n\
Yq+5Kwmf0zHi2fkDk3CPFY3aSBqQ/wG6sFmam3AlV2qkC7OE52Pq1NeA7S38J/OL\n\
eVrPvHFvZNmbTzzGrddTCrCmunxTaq5hRPnSAzE4g2izIeGF16Rvh1ObZDJllEU8\n\
YsVqCYh+uQKBgB1cGVarpgGCsbsvrF0sSl0wCvyV4kuBZP1s7d5/1Vi30P9IwSWE\n\
6yHtIchCX3qdzHd+ESGrqdqneJRSfL7IuZKEt+jhcjHdePmE4hN9anJ+9wOGj/JU\n\
QMU6tiRHN85cTQXaNzd8Cdt5w0Yf+1i6Sz5uRdsmR9G3ytCRL4yXgyubAoGAKDhc\n\
lNEwPQNvTDjEvZuuBScw7Nnq7zodW94n3oSEXU1ITya4B/1IZ27J/xKUJQavDqrx\n\
SXqdMtkCbojUNYndAytDKOr/jdALUsShH8XE/EYlRG4sY1SfYXecWU3xQTbYmjNc\n\
7L4e+NqND7eHrLM7Sftse2ORYZ01jI3789Gc3qECgYA6gL5HGItq+CCjn970sF9B\n\
5tBBCJp26DYAraMoyOcoYcyNr7YoIUlJWif/GgsNbMUA2aC1wg0iSxM0b0EDFGhD\n\
q6JZJarCZspU2auAusCTbHjqxLN7av8j2K3MFe/GToyRv1sBhHXKyx6KameeJn5h\n\
CD7/2mK6CQMr4DrkHTbTSA==\n\
-----END PRIVATE KEY-----\n\
";

const ACCOUNT: &str = "4242";
const DATA_SOURCE: &str = "accounts/4242/dataSources/777";
const EMAIL: &str = "stockd@stockd-test.iam.gserviceaccount.com";

fn spec(path: &str) -> String {
    let full = format!("{}/../../specs/gmc/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("spec file {full} missing: {e}"))
}

// ---------------------------------------------------------------------------
// Proto reading: the JSON names (lowerCamelCase) of a message's own fields.

fn strip_comment_and_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            break;
        }
        out.push(c);
    }
    out
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// The JSON field names of `message` (its own fields, not nested messages').
fn proto_fields(proto: &str, message: &str) -> HashSet<String> {
    let mut fields = HashSet::new();
    let mut depth: i32 = 0;
    let mut inside = false;
    let opener = format!("message {message} {{");
    for raw in proto.lines() {
        let line = strip_comment_and_strings(raw);
        let trimmed = line.trim();
        if !inside {
            if trimmed == opener {
                inside = true;
                depth = 1;
            }
            continue;
        }
        if depth == 1 {
            let tokens: Vec<&str> = trimmed
                .trim_start_matches("optional ")
                .trim_start_matches("repeated ")
                .split_whitespace()
                .collect();
            if tokens.len() >= 4
                && tokens[0] != "option"
                && tokens[0] != "message"
                && tokens[0] != "enum"
                && is_ident(tokens[1])
                && tokens[2] == "="
                && tokens[3].starts_with(|c: char| c.is_ascii_digit())
            {
                fields.insert(camel(tokens[1]));
            }
        }
        depth += line.matches('{').count() as i32;
        depth -= line.matches('}').count() as i32;
        if depth <= 0 {
            break;
        }
    }
    assert!(!fields.is_empty(), "message {message} not found in proto");
    fields
}

/// Every key of `value` (an object) is a field of `message`.
fn assert_fields_in(value: &Value, fields: &HashSet<String>, message: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{message} body is not an object: {value}"));
    for key in object.keys() {
        assert!(
            fields.contains(key),
            "`{key}` is not a field of {message} (proto fields: {fields:?})"
        );
    }
}

// ---------------------------------------------------------------------------
// The fake Merchant API and OAuth endpoint.

fn public_key_der() -> Vec<u8> {
    let b64: String = TEST_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("test key base64");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("test key");
    use ring::signature::KeyPair;
    pair.public_key().as_ref().to_vec()
}

/// Verifies a JWT assertion the way Google's token endpoint would: RS256
/// over `header.claims` with the service account's public key, then the
/// header and claims. Returns the claims.
fn verify_jwt(jwt: &str, audience: &str) -> Result<Value, String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("JWT has {} parts", parts.len()));
    }
    let signature = b64.decode(parts[2]).map_err(|e| e.to_string())?;
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der(),
    );
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| "bad signature".to_owned())?;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if header != json!({"alg": "RS256", "typ": "JWT"}) {
        return Err(format!("bad header {header}"));
    }
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let iat = claims["iat"].as_i64().ok_or("no iat")?;
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if claims["iss"] != EMAIL || claims["scope"] != SCOPE || claims["aud"] != audience {
        return Err(format!("bad claims {claims}"));
    }
    if exp - iat != 3600 || (iat - Utc::now().timestamp()).abs() > 120 {
        return Err(format!("bad times {claims}"));
    }
    Ok(claims)
}

/// Verifies a self-signed JWT access token as Google would: RS256 with the
/// service account's key, `iss` = `sub` = the account, the content scope and
/// a lifetime of at most one hour.
fn verify_access_jwt(jwt: &str) -> Result<Value, String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("JWT has {} parts", parts.len()));
    }
    let signature = b64.decode(parts[2]).map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der(),
    )
    .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
    .map_err(|_| "bad signature".to_owned())?;
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let iat = claims["iat"].as_i64().ok_or("no iat")?;
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if claims["iss"] != EMAIL || claims["sub"] != EMAIL || claims["scope"] != SCOPE {
        return Err(format!("bad claims {claims}"));
    }
    if exp - iat > 3600 || exp <= iat {
        return Err(format!("bad times {claims}"));
    }
    Ok(claims)
}

fn google_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
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

#[derive(Default)]
struct State {
    log: Vec<(Instant, HttpRequest)>,
    /// Issued tokens and when they expire.
    tokens: HashMap<String, Instant>,
    token_lifetime: u64,
    /// Product inputs by decoded name `lang~label~offer`.
    inputs: HashMap<String, Value>,
    /// Processed products (only after `process()`).
    products: HashMap<String, Value>,
    local: HashMap<(String, String), Value>,
    /// One-shot answers: the first whose pattern the URL contains is used.
    scripted: VecDeque<(String, HttpResponse)>,
    /// Protocol violations seen (JWT, dataSource, Content API, …).
    violations: Vec<String>,
}

struct Google {
    state: Mutex<State>,
}

fn query_pairs(query: &str) -> HashMap<String, String> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 3;
                        }
                        None => {
                            out.push(b'%');
                            i += 1;
                        }
                    }
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `lang~label~offer` from a path segment in either form (§3.3).
fn decode_segment(segment: &str) -> Option<String> {
    if segment.contains('~') {
        return Some(segment.to_owned());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()?;
    String::from_utf8(bytes).ok()
}

impl Google {
    fn new() -> Arc<Google> {
        Arc::new(Google {
            state: Mutex::new(State {
                token_lifetime: 3599,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("state lock")
    }

    /// A product input that exists (as if inserted with all its data).
    fn seed(&self, name: &str) {
        let mut parts = name.splitn(3, '~');
        let (lang, label, offer) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        self.state().inputs.insert(
            name.to_owned(),
            json!({
                "name": format!("accounts/{ACCOUNT}/productInputs/{name}"),
                "offerId": offer, "contentLanguage": lang, "feedLabel": label,
                "productAttributes": {"title": "Tee", "availability": "IN_STOCK",
                    "price": {"amountMicros": "19990000", "currencyCode": "EUR"}}
            }),
        );
    }

    /// Processing done: inputs become processed products.
    fn process(&self) {
        let mut state = self.state();
        let inputs: Vec<(String, Value)> = state
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, mut input) in inputs {
            input["name"] = json!(format!("accounts/{ACCOUNT}/products/{name}"));
            state.products.insert(name, input);
        }
    }

    fn script(&self, pattern: &str, answer: HttpResponse) {
        self.state()
            .scripted
            .push_back((pattern.to_owned(), answer));
    }

    fn requests(&self) -> Vec<(Instant, HttpRequest)> {
        self.state().log.clone()
    }

    fn api_requests(&self) -> Vec<(Instant, HttpRequest)> {
        self.requests()
            .into_iter()
            .filter(|(_, r)| !r.url.starts_with(DEFAULT_TOKEN_URL))
            .collect()
    }

    fn token_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(_, r)| r.url == DEFAULT_TOKEN_URL)
            .count()
    }

    fn input(&self, name: &str) -> Value {
        self.state()
            .inputs
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// No protocol violation and no call outside the Merchant API v1.
    fn assert_clean(&self) {
        let state = self.state();
        assert!(state.violations.is_empty(), "{:?}", state.violations);
        for (_, r) in &state.log {
            assert!(
                r.url == DEFAULT_TOKEN_URL
                    || r.url
                        .starts_with(&format!("{DEFAULT_API_URL}/products/v1/"))
                    || r.url
                        .starts_with(&format!("{DEFAULT_API_URL}/inventories/v1/")),
                "unexpected call {}",
                r.url
            );
            assert!(!r.url.contains("content/v2.1") && !r.url.contains("shoppingcontent"));
        }
    }

    fn token_endpoint(&self, state: &mut State, request: &HttpRequest) -> HttpResponse {
        let form = query_pairs(&String::from_utf8_lossy(&request.body));
        let content_type = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if request.method != http::Method::POST
            || content_type != Some("application/x-www-form-urlencoded")
            || form.get("grant_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            state.violations.push(format!("bad token request {form:?}"));
            return response(400, &[], &json!({"error": "unsupported_grant_type"}));
        }
        match verify_jwt(
            form.get("assertion").map_or("", String::as_str),
            DEFAULT_TOKEN_URL,
        ) {
            Ok(_) => {
                let token = format!("ya29.token-{}", state.tokens.len() + 1);
                state.tokens.insert(
                    token.clone(),
                    Instant::now() + Duration::from_secs(state.token_lifetime),
                );
                response(
                    200,
                    &[],
                    &json!({"access_token": token, "expires_in": state.token_lifetime,
                            "token_type": "Bearer"}),
                )
            }
            Err(e) => {
                state.violations.push(format!("JWT refused: {e}"));
                response(
                    400,
                    &[],
                    &json!({"error": "invalid_grant", "error_description": e}),
                )
            }
        }
    }

    fn api(
        &self,
        state: &mut State,
        request: &HttpRequest,
        path: &str,
        query: &str,
    ) -> HttpResponse {
        let not_found = || response(404, &[], &google_error(404, "NOT_FOUND", "not found"));
        let bearer = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        match state.tokens.get(bearer) {
            Some(&until) if Instant::now() < until => {}
            // A self-signed JWT access token is accepted as the bearer itself.
            _ if verify_access_jwt(bearer).is_ok() => {}
            _ => {
                return response(
                    401,
                    &[],
                    &google_error(401, "UNAUTHENTICATED", "Request had invalid credentials."),
                )
            }
        }
        let q = query_pairs(query);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("PATCH", ["products", "v1", "accounts", acct, "productInputs", seg]) => {
                if *acct != ACCOUNT || q.get("dataSource").map(String::as_str) != Some(DATA_SOURCE)
                {
                    state
                        .violations
                        .push(format!("bad patch target {path}?{query}"));
                    return response(
                        400,
                        &[],
                        &google_error(400, "INVALID_ARGUMENT", "dataSource"),
                    );
                }
                let Some(name) = decode_segment(seg) else {
                    return not_found();
                };
                let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                    return response(400, &[], &google_error(400, "INVALID_ARGUMENT", "json"));
                };
                let Some(input) = state.inputs.get_mut(&name) else {
                    return not_found();
                };
                let mask = q.get("updateMask").cloned().unwrap_or_default();
                for path in mask.split(',').filter(|p| !p.is_empty()) {
                    let Some(field) = path.strip_prefix("productAttributes.") else {
                        continue;
                    };
                    match body["productAttributes"].get(field) {
                        Some(v) => input["productAttributes"][field] = v.clone(),
                        None => {
                            if let Some(a) = input["productAttributes"].as_object_mut() {
                                a.remove(field);
                            }
                        }
                    }
                }
                let answer = input.clone();
                response(200, &[], &answer)
            }
            ("GET", ["products", "v1", "accounts", _, "products", seg]) => {
                match decode_segment(seg).and_then(|n| state.products.get(&n).cloned()) {
                    Some(product) => response(200, &[], &product),
                    None => not_found(),
                }
            }
            (
                "POST",
                ["inventories", "v1", "accounts", _, "products", seg, "localInventories:insert"],
            ) => {
                let Some(name) = decode_segment(seg).filter(|n| state.products.contains_key(n))
                else {
                    return not_found();
                };
                let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
                    return response(400, &[], &google_error(400, "INVALID_ARGUMENT", "json"));
                };
                let store = body["storeCode"].as_str().unwrap_or_default().to_owned();
                body["name"] = json!(format!(
                    "accounts/{ACCOUNT}/products/{name}/localInventories/{store}"
                ));
                state.local.insert((name, store), body.clone());
                response(200, &[], &body)
            }
            _ => {
                state
                    .violations
                    .push(format!("unknown call {} {path}", request.method));
                response(410, &[], &google_error(410, "NOT_FOUND", "gone"))
            }
        }
    }
}

#[async_trait]
impl Transport for Google {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let mut state = self.state();
        state.log.push((Instant::now(), request.clone()));
        if let Some(i) = state
            .scripted
            .iter()
            .position(|(p, _)| request.url.contains(p.as_str()))
        {
            if let Some((_, answer)) = state.scripted.remove(i) {
                return Ok(answer);
            }
        }
        if request.url == DEFAULT_TOKEN_URL {
            return Ok(self.token_endpoint(&mut state, &request));
        }
        let Some(rest) = request.url.strip_prefix(DEFAULT_API_URL) else {
            state
                .violations
                .push(format!("unknown host {}", request.url));
            return Ok(response(410, &[], &google_error(410, "NOT_FOUND", "gone")));
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (path, query) = (path.to_owned(), query.to_owned());
        Ok(self.api(&mut state, &request, &path, &query))
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn config() -> Config {
    Config {
        account_id: ACCOUNT.to_owned(),
        data_source: DATA_SOURCE.to_owned(),
        service_account_email: EMAIL.to_owned(),
        private_key_pem: TEST_KEY_PEM.to_owned(),
        ..Config::default()
    }
}

fn connector(google: &Arc<Google>) -> Gmc {
    Gmc::new(config(), google.clone())
}

fn external(offer: &str) -> External {
    let mut map = Map::new();
    map.insert("offer_id".into(), json!(offer));
    map.insert("content_language".into(), json!("nl"));
    map.insert("feed_label".into(), json!("NL"));
    map
}

fn item(offer: &str, availability: Availability, quantity: i64) -> PushItem {
    PushItem {
        sku: format!("SKU-{offer}"),
        external: external(offer),
        quantity,
        availability,
        eta: None,
        believed: None,
        idempotency_key: format!("key-{offer}"),
        reference: "stockd://ledger/1".to_owned(),
    }
}

fn body_of(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn failed(outcome: &ItemOutcome) -> &ChannelError {
    match outcome {
        ItemOutcome::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Auth.

#[test]
fn jwt_is_rs256_signed_with_the_service_account_claims() {
    let der = public_key_der();
    assert!(!der.is_empty());
    let b64: String = TEST_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("test key base64");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&pkcs8).expect("test key");
    let now = Utc::now().timestamp();
    let jwt = jwt_assertion(&key, EMAIL, DEFAULT_TOKEN_URL, now).expect("signed");
    let claims = verify_jwt(&jwt, DEFAULT_TOKEN_URL).expect("valid JWT");
    assert_eq!(
        claims,
        json!({"iss": EMAIL, "scope": "https://www.googleapis.com/auth/content",
               "aud": "https://oauth2.googleapis.com/token", "iat": now, "exp": now + 3600})
    );
    // The check can fail: a changed claim breaks the signature.
    let parts: Vec<&str> = jwt.split('.').collect();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"iss": "other@x.iam.gserviceaccount.com", "scope": SCOPE,
               "aud": DEFAULT_TOKEN_URL, "iat": now, "exp": now + 3600})
        .to_string(),
    );
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(
        verify_jwt(&forged, DEFAULT_TOKEN_URL),
        Err("bad signature".to_owned())
    );
}

/// Google's client libraries sign their own JWT and send it as the bearer
/// token; the connector does the same when configured to, and then never
/// calls the token endpoint.
#[tokio::test(start_paused = true)]
async fn self_signed_jwt_is_sent_as_the_bearer_without_a_token_request() {
    let google = Google::new();
    google.seed("nl~NL~A1");
    let gmc = Gmc::new(
        Config {
            self_signed_jwt: true,
            ..config()
        },
        google.clone(),
    );
    let items = [item("A1", Availability::InStock, 3)];
    let outcomes = gmc.push(&items).await.expect("push");
    assert!(
        matches!(outcomes[0], ItemOutcome::Applied { .. }),
        "{outcomes:?}"
    );
    gmc.push(&items).await.expect("push");
    assert_eq!(google.token_requests(), 0, "no token endpoint call");
    let api = google.api_requests();
    assert_eq!(api.len(), 2);
    let bearers: Vec<String> = api
        .iter()
        .map(|(_, r)| {
            r.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .expect("bearer")
                .to_owned()
        })
        .collect();
    assert_eq!(bearers[0], bearers[1], "the signed token is reused");
    let claims = verify_access_jwt(&bearers[0]).expect("a valid self-signed JWT");
    assert!(claims.get("aud").is_none(), "{claims}");
}

#[tokio::test(start_paused = true)]
async fn token_is_exchanged_cached_and_renewed_before_expiry() {
    let google = Google::new();
    google.seed("nl~NL~A1");
    let gmc = connector(&google);
    let items = [item("A1", Availability::InStock, 3)];

    gmc.push(&items).await.expect("push");
    gmc.push(&items).await.expect("push");
    assert_eq!(google.token_requests(), 1, "token is cached");
    let token_request = google.requests()[0].1.clone();
    assert_eq!(token_request.url, "https://oauth2.googleapis.com/token");
    let api = google.api_requests();
    assert_eq!(api.len(), 2);
    for (_, r) in &api {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer ya29.token-1")
        );
    }

    // Shortly before the 3599 s lifetime ends, a new token is fetched.
    tokio::time::advance(Duration::from_secs(3200)).await;
    gmc.push(&items).await.expect("push");
    assert_eq!(google.token_requests(), 1);
    tokio::time::advance(Duration::from_secs(200)).await;
    gmc.push(&items).await.expect("push");
    assert_eq!(google.token_requests(), 2, "renewed before expiry");
    let last = google.api_requests().pop().expect("request").1;
    assert_eq!(
        last.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer ya29.token-2")
    );
    google.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn a_revoked_token_is_renewed_once_on_401() {
    let google = Google::new();
    google.seed("nl~NL~A1");
    let gmc = connector(&google);
    let items = [item("A1", Availability::InStock, 3)];
    gmc.push(&items).await.expect("push");
    google.state().tokens.clear(); // revoked server-side

    let outcomes = gmc.push(&items).await.expect("push");
    assert_eq!(outcomes, vec![ItemOutcome::Applied { quantity: 3 }]);
    assert_eq!(google.token_requests(), 2);

    // A 401 that persists with a fresh token is a permanent failure.
    let unauthorized = response(
        401,
        &[],
        &google_error(401, "UNAUTHENTICATED", "Request had invalid credentials."),
    );
    google.script("/productInputs/", unauthorized.clone());
    google.script("/productInputs/", unauthorized);
    let outcomes = gmc
        .push(&[
            item("A1", Availability::InStock, 3),
            item("A1", Availability::InStock, 3),
        ])
        .await
        .expect("push");
    let error = failed(&outcomes[0]);
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Permanent, Some(401))
    );
    // The second item is not sent with credentials that were just refused.
    assert_eq!(failed(&outcomes[1]), error);
    assert_eq!(google.token_requests(), 3);
    google.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_fail_the_whole_call_without_api_calls() {
    let google = Google::new();
    google.script(
        "oauth2.googleapis.com/token",
        response(
            400,
            &[],
            &json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ),
    );
    let gmc = connector(&google);
    let error = gmc
        .push(&[item("A1", Availability::InStock, 1)])
        .await
        .expect_err("no token");
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Permanent, "invalid_grant")
    );
    assert!(google.api_requests().is_empty());

    let bad_key = Gmc::new(
        Config {
            private_key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
                .to_owned(),
            ..config()
        },
        google.clone(),
    );
    let error = bad_key
        .read_levels(&[LevelQuery {
            sku: "SKU-A1".into(),
            external: external("A1"),
        }])
        .await
        .expect_err("bad key");
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Permanent, "invalid_private_key")
    );
    assert_eq!(google.requests().len(), 1, "nothing sent with a bad key");
}

// ---------------------------------------------------------------------------
// Push.

#[tokio::test(start_paused = true)]
async fn push_patches_availability_with_mask_and_data_source() {
    let google = Google::new();
    google.seed("nl~NL~TEE-1");
    let gmc = connector(&google);
    assert_eq!(gmc.kind(), "gmc");
    assert!(!gmc.carries_quantity());
    assert!(!gmc.polls_orders());

    let outcomes = gmc
        .push(&[item("TEE-1", Availability::OutOfStock, 0)])
        .await
        .expect("push");
    assert_eq!(outcomes, vec![ItemOutcome::Applied { quantity: 0 }]);

    let api = google.api_requests();
    assert_eq!(api.len(), 1);
    let request = &api[0].1;
    assert_eq!(request.method, http::Method::PATCH);
    let (path, query) = request.url.split_once('?').expect("query");
    assert_eq!(
        path,
        "https://merchantapi.googleapis.com/products/v1/accounts/4242/productInputs/nl~NL~TEE-1"
    );
    let q = query_pairs(query);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q["dataSource"], "accounts/4242/dataSources/777");
    assert_eq!(
        q["updateMask"],
        "productAttributes.availability,productAttributes.availabilityDate"
    );
    assert_eq!(
        request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );

    let body = body_of(request);
    assert_eq!(
        body,
        json!({"offerId": "TEE-1", "contentLanguage": "nl", "feedLabel": "NL",
               "productAttributes": {"availability": "OUT_OF_STOCK"}})
    );
    // Every field sent exists in the v1 protos (JSON = lowerCamelCase).
    let input_fields = proto_fields(&spec("products_v1/productinputs.proto"), "ProductInput");
    let attribute_fields = proto_fields(
        &spec("products_v1/products_common.proto"),
        "ProductAttributes",
    );
    assert!(input_fields.contains("productAttributes") && !input_fields.contains("attributes"));
    assert_fields_in(&body, &input_fields, "ProductInput");
    assert_fields_in(
        &body["productAttributes"],
        &attribute_fields,
        "ProductAttributes",
    );
    for mask_path in q["updateMask"].split(',') {
        let (head, field) = mask_path.split_once('.').expect("dotted mask path");
        assert!(input_fields.contains(head), "{head}");
        assert!(attribute_fields.contains(field), "{field}");
    }
    // Other attributes are untouched by the masked patch.
    let stored = google.input("nl~NL~TEE-1");
    assert_eq!(stored["productAttributes"]["availability"], "OUT_OF_STOCK");
    assert_eq!(stored["productAttributes"]["title"], "Tee");
    assert_eq!(
        stored["productAttributes"]["price"]["amountMicros"],
        "19990000"
    );
    google.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn availability_literals_and_backorder_date() {
    let google = Google::new();
    google.seed("nl~NL~B1");
    let gmc = connector(&google);
    let proto = spec("products_v1/products_common.proto");
    let enum_start = proto
        .find("enum Availability {")
        .expect("Availability enum");
    let enum_body = &proto[enum_start..enum_start + proto[enum_start..].find('}').expect("end")];

    let mut backorder = item("B1", Availability::Backorder, 0);
    backorder.eta = NaiveDate::from_ymd_opt(2026, 10, 15);
    let mut undated_backorder = item("B1", Availability::Backorder, 0);
    undated_backorder.eta = None;
    let mut in_stock_with_eta = item("B1", Availability::InStock, 4);
    in_stock_with_eta.eta = NaiveDate::from_ymd_opt(2026, 10, 15);

    let cases = [
        (item("B1", Availability::InStock, 4), "IN_STOCK", None),
        (
            item("B1", Availability::OutOfStock, 0),
            "OUT_OF_STOCK",
            None,
        ),
        (backorder, "BACKORDER", Some("2026-10-15T00:00:00Z")),
        (undated_backorder, "BACKORDER", None),
        (in_stock_with_eta, "IN_STOCK", None),
    ];
    for (push, literal, date) in cases {
        let outcomes = gmc.push(std::slice::from_ref(&push)).await.expect("push");
        assert!(
            matches!(outcomes[0], ItemOutcome::Applied { .. }),
            "{outcomes:?}"
        );
        assert!(
            enum_body.contains(&format!("{literal} =")),
            "{literal} not in the enum"
        );
        let sent = body_of(&google.api_requests().pop().expect("request").1);
        assert_eq!(sent["productAttributes"]["availability"], literal);
        assert_eq!(
            sent["productAttributes"]
                .get("availabilityDate")
                .and_then(Value::as_str),
            date
        );
        // The masked date without a value clears a stale one.
        let stored = google.input("nl~NL~B1");
        assert_eq!(
            stored["productAttributes"]
                .get("availabilityDate")
                .and_then(Value::as_str),
            date
        );
    }
    google.assert_clean();
}

#[test]
fn product_names_use_the_plain_or_base64url_form() {
    assert_eq!(product_segment("en", "US", "sku123"), "en~US~sku123");
    // The note's example (§3.3).
    assert_eq!(product_segment("en", "US", "sku/123"), "ZW5-VVN-c2t1LzEyMw");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for offer in ["a~b", "50%", "x y", "café", "a?b#c", "a+b"] {
        let segment = product_segment("nl", "NL", offer);
        assert!(!segment.contains('~'), "{offer}: {segment}");
        assert!(
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{segment}"
        );
        let decoded = String::from_utf8(b64.decode(&segment).expect("base64url")).expect("utf8");
        assert_eq!(decoded, format!("nl~NL~{offer}"));
    }
    // Google normalises whitespace in offer ids; the name follows.
    assert_eq!(
        product_segment("nl", "NL", "  a   b "),
        b64.encode("nl~NL~a b")
    );
}

#[tokio::test(start_paused = true)]
async fn offer_ids_with_special_characters_are_sent_encoded() {
    let google = Google::new();
    google.seed("nl~NL~shirt/red~L");
    let gmc = connector(&google);
    let outcomes = gmc
        .push(&[item("shirt/red~L", Availability::InStock, 2)])
        .await
        .expect("push");
    assert_eq!(outcomes, vec![ItemOutcome::Applied { quantity: 2 }]);
    let request = google.api_requests().pop().expect("request").1;
    let segment = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("nl~NL~shirt/red~L");
    assert!(
        request.url.starts_with(&format!(
            "https://merchantapi.googleapis.com/products/v1/accounts/4242/productInputs/{segment}?"
        )),
        "{}",
        request.url
    );
    assert_eq!(body_of(&request)["offerId"], "shirt/red~L");
    assert_eq!(
        google.input("nl~NL~shirt/red~L")["productAttributes"]["availability"],
        "IN_STOCK"
    );
    google.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_paced_one_request_per_product() {
    let google = Google::new();
    let items: Vec<PushItem> = (0..50)
        .map(|i| {
            google.seed(&format!("nl~NL~P{i}"));
            item(&format!("P{i}"), Availability::InStock, i)
        })
        .collect();
    let gmc = Gmc::new(
        Config {
            rate_limit: (10.0, 2.0),
            ..config()
        },
        google.clone(),
    );
    assert_eq!(gmc.max_batch(), 50);
    let start = Instant::now();
    let outcomes = gmc.push(&items).await.expect("push");
    assert_eq!(outcomes.len(), 50);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome, &ItemOutcome::Applied { quantity: i as i64 });
    }
    let api = google.api_requests();
    assert_eq!(api.len(), 50);
    for (i, (at, request)) in api.iter().enumerate() {
        assert!(request.url.contains(&format!("productInputs/nl~NL~P{i}?")));
        // A burst of 10, then 2 per second.
        let expected = if i < 10 {
            Duration::ZERO
        } else {
            Duration::from_millis(500 * (i as u64 - 9))
        };
        let elapsed = at.duration_since(start);
        assert!(
            elapsed + Duration::from_millis(5) >= expected
                && elapsed <= expected + Duration::from_millis(5),
            "request {i} at {elapsed:?}, expected {expected:?}"
        );
    }
    google.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn missing_ids_are_permanent_per_item() {
    let google = Google::new();
    google.seed("nl~NL~OK");
    let gmc = connector(&google);
    let mut no_offer = item("X", Availability::InStock, 1);
    no_offer.external.remove("offer_id");
    let mut no_label = item("X", Availability::InStock, 1);
    no_label.external.remove("feed_label");
    let outcomes = gmc
        .push(&[no_offer, item("OK", Availability::InStock, 1), no_label])
        .await
        .expect("push");
    assert_eq!(failed(&outcomes[0]).class, ErrorClass::Permanent);
    assert_eq!(failed(&outcomes[0]).code, "missing_external_id");
    assert_eq!(outcomes[1], ItemOutcome::Applied { quantity: 1 });
    assert_eq!(failed(&outcomes[2]).class, ErrorClass::Permanent);
    assert_eq!(google.api_requests().len(), 1);

    // Only bad items: nothing is sent, not even a token request.
    let fresh = Google::new();
    let gmc = connector(&fresh);
    let mut bad = item("X", Availability::InStock, 1);
    bad.external.clear();
    let outcomes = gmc.push(&[bad]).await.expect("push");
    assert_eq!(failed(&outcomes[0]).class, ErrorClass::Permanent);
    assert!(fresh.requests().is_empty());
}

// ---------------------------------------------------------------------------
// Errors and quotas.

#[tokio::test(start_paused = true)]
async fn errors_are_classified() {
    let google = Google::new();
    google.seed("nl~NL~E1");
    let gmc = connector(&google);
    let cases = [
        (
            response(500, &[], &google_error(500, "INTERNAL", "boom")),
            ErrorClass::Retryable,
            "INTERNAL",
        ),
        (
            response(503, &[], &google_error(503, "UNAVAILABLE", "later")),
            ErrorClass::Retryable,
            "UNAVAILABLE",
        ),
        (
            response(502, &[], &json!("<html>bad gateway</html>")),
            ErrorClass::Retryable,
            "UNAVAILABLE",
        ),
        (
            response(409, &[], &google_error(409, "ABORTED", "conflict")),
            ErrorClass::Retryable,
            "ABORTED",
        ),
        (
            response(
                400,
                &[],
                &google_error(400, "INVALID_ARGUMENT", "[availability] invalid"),
            ),
            ErrorClass::Permanent,
            "INVALID_ARGUMENT",
        ),
        (
            response(404, &[], &google_error(404, "NOT_FOUND", "no such input")),
            ErrorClass::Permanent,
            "NOT_FOUND",
        ),
        (
            response(
                403,
                &[],
                &google_error(403, "PERMISSION_DENIED", "not your account"),
            ),
            ErrorClass::Permanent,
            "PERMISSION_DENIED",
        ),
    ];
    for (answer, class, code) in cases {
        let status = answer.status;
        google.script("/productInputs/", answer);
        let outcomes = gmc
            .push(&[item("E1", Availability::InStock, 1)])
            .await
            .expect("push");
        let error = failed(&outcomes[0]);
        assert_eq!(
            (error.class, error.code.as_str(), error.status),
            (class, code, Some(status))
        );
        assert!(error.body.is_some());
    }
    // A real unknown product (never inserted) is permanent for a patch.
    let outcomes = gmc
        .push(&[item("NEVER", Availability::InStock, 1)])
        .await
        .expect("push");
    assert_eq!(failed(&outcomes[0]).class, ErrorClass::Permanent);

    // No answer at all: retryable, and the rest of the batch is not sent.
    struct Down;
    #[async_trait]
    impl Transport for Down {
        async fn send(&self, _: HttpRequest) -> Result<HttpResponse, ChannelError> {
            Err(ChannelError::new(
                ErrorClass::Retryable,
                "network",
                "refused",
            ))
        }
    }
    let down = Gmc::new(config(), Arc::new(Down));
    let error = down
        .push(&[item("E1", Availability::InStock, 1)])
        .await
        .expect_err("no token endpoint");
    assert_eq!(error.class, ErrorClass::Retryable);
}

fn quota_answer(reason: &str, retry_after: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = retry_after
        .map(|s| ("retry-after", s))
        .into_iter()
        .collect();
    response(
        429,
        &headers,
        &json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": format!("Quota exceeded: {reason}"),
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": reason, "domain": "merchantapi.googleapis.com"}]}}),
    )
}

#[tokio::test(start_paused = true)]
async fn per_minute_quota_is_rate_limited_and_blocks_until_retry_after() {
    let google = Google::new();
    for i in 0..3 {
        google.seed(&format!("nl~NL~Q{i}"));
    }
    let gmc = connector(&google);
    google.script(
        "productInputs/nl~NL~Q1",
        quota_answer("quota/request_rate_too_high", Some("30")),
    );
    let items: Vec<PushItem> = (0..3)
        .map(|i| item(&format!("Q{i}"), Availability::InStock, 1))
        .collect();
    let outcomes = gmc.push(&items).await.expect("push");
    assert_eq!(outcomes[0], ItemOutcome::Applied { quantity: 1 });
    let error = failed(&outcomes[1]).clone();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.code, "quota/request_rate_too_high");
    assert_eq!(error.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(error.status, Some(429));
    // The third is not sent into the quota error.
    assert_eq!(failed(&outcomes[2]).class, ErrorClass::RateLimited);
    assert_eq!(google.api_requests().len(), 2);

    // While blocked, pushes fail at once with what is left of the wait.
    tokio::time::advance(Duration::from_secs(10)).await;
    let outcomes = gmc.push(&items[1..2]).await.expect("push");
    let error = failed(&outcomes[0]);
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(20)));
    assert_eq!(google.api_requests().len(), 2);

    // Reads are a separate per-method quota.
    google.process();
    let levels = gmc
        .read_levels(&[LevelQuery {
            sku: "SKU-Q0".into(),
            external: external("Q0"),
        }])
        .await
        .expect("read");
    assert!(levels[0].is_ok());

    tokio::time::advance(Duration::from_secs(20)).await;
    let outcomes = gmc.push(&items[1..]).await.expect("push");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, ItemOutcome::Applied { .. })));
    google.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn daily_quota_waits_until_the_daily_reset() {
    let google = Google::new();
    google.seed("nl~NL~D1");
    let gmc = connector(&google);
    google.script(
        "/productInputs/",
        quota_answer("quota/daily_limit_exceeded", None),
    );
    let before = Utc::now();
    let outcomes = gmc
        .push(&[item("D1", Availability::InStock, 1)])
        .await
        .expect("push");
    let after = Utc::now();
    let error = failed(&outcomes[0]);
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.code, "quota/daily_limit_exceeded");
    let wait = error.retry_after.expect("retry_after");
    let (low, high) = (
        daily_quota_reset_after(after),
        daily_quota_reset_after(before),
    );
    assert!(
        wait + Duration::from_secs(1) >= low && wait <= high + Duration::from_secs(1),
        "{wait:?} not in {low:?}..{high:?}"
    );
    assert!(wait <= Duration::from_secs(24 * 3600));

    // Quota errors without HTTP 429 (reason only) are recognised too.
    let google = Google::new();
    google.seed("nl~NL~D1");
    let gmc = connector(&google);
    google.script(
        "/productInputs/",
        response(
            403,
            &[],
            &google_error(403, "PERMISSION_DENIED", "quota/daily_limit_exceeded"),
        ),
    );
    let outcomes = gmc
        .push(&[item("D1", Availability::InStock, 1)])
        .await
        .expect("push");
    assert_eq!(failed(&outcomes[0]).class, ErrorClass::RateLimited);

    // A bare 429 is the per-minute limit: 60 s without Retry-After.
    let google = Google::new();
    google.seed("nl~NL~D1");
    let gmc = connector(&google);
    google.script("/productInputs/", response(429, &[], &json!({})));
    let outcomes = gmc
        .push(&[item("D1", Availability::InStock, 1)])
        .await
        .expect("push");
    let error = failed(&outcomes[0]);
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(60)));
}

#[test]
fn daily_reset_is_midnight_pacific_standard_time() {
    let at = |h, m| {
        Utc.with_ymd_and_hms(2026, 9, 3, h, m, 0)
            .single()
            .expect("time")
    };
    assert_eq!(daily_quota_reset_after(at(7, 0)), Duration::from_secs(3600));
    assert_eq!(
        daily_quota_reset_after(at(8, 0)),
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        daily_quota_reset_after(at(9, 30)),
        Duration::from_secs(22 * 3600 + 1800)
    );
}

// ---------------------------------------------------------------------------
// Read-back.

#[tokio::test(start_paused = true)]
async fn read_levels_returns_the_processed_availability() {
    let google = Google::new();
    google.seed("nl~NL~R1");
    google.seed("nl~NL~R2");
    google.process();
    {
        let mut state = google.state();
        state.products.get_mut("nl~NL~R1").expect("R1")["productAttributes"] = json!({"availability": "BACKORDER", "sellOnGoogleQuantity": "12",
                   "availabilityDate": "2026-10-15T00:00:00Z"});
        state.products.get_mut("nl~NL~R2").expect("R2")["productAttributes"] =
            json!({"availability": "OUT_OF_STOCK"});
    }
    google.seed("nl~NL~NEW"); // inserted, not processed yet
    let gmc = connector(&google);
    let query = |offer: &str| LevelQuery {
        sku: format!("SKU-{offer}"),
        external: external(offer),
    };
    let mut bad = query("BAD");
    bad.external.remove("content_language");
    let levels = gmc
        .read_levels(&[query("R1"), query("R2"), query("NEW"), bad])
        .await
        .expect("read");
    assert_eq!(levels.len(), 4);
    let r1 = levels[0].as_ref().expect("R1");
    assert_eq!(r1.availability, Some(Availability::Backorder));
    assert_eq!(r1.quantity, Some(12), "int64 arrives as a string");
    let r2 = levels[1].as_ref().expect("R2");
    assert_eq!(
        (r2.availability, r2.quantity),
        (Some(Availability::OutOfStock), None)
    );
    let pending = levels[2].as_ref().expect_err("not processed yet");
    assert_eq!(pending.class, ErrorClass::Retryable);
    assert_eq!(pending.code, "not_processed");
    assert_eq!(
        levels[3].as_ref().expect_err("bad").class,
        ErrorClass::Permanent
    );

    let api = google.api_requests();
    assert_eq!(api.len(), 3);
    assert_eq!(api[0].1.method, http::Method::GET);
    assert_eq!(
        api[0].1.url,
        "https://merchantapi.googleapis.com/products/v1/accounts/4242/products/nl~NL~R1"
    );

    // After processing, the pushed availability is read back.
    gmc.push(&[item("NEW", Availability::OutOfStock, 0)])
        .await
        .expect("push");
    google.process();
    let levels = gmc.read_levels(&[query("NEW")]).await.expect("read");
    assert_eq!(
        levels[0].as_ref().expect("NEW").availability,
        Some(Availability::OutOfStock)
    );
    google.assert_clean();
}

#[test]
fn int64_fields_are_read_from_strings_and_numbers() {
    assert_eq!(int64_value(Some(&json!("12"))), Some(12));
    assert_eq!(int64_value(Some(&json!(" 7 "))), Some(7));
    assert_eq!(int64_value(Some(&json!(12))), Some(12));
    // Beyond f64 precision: exact only through the string form.
    assert_eq!(
        int64_value(Some(&json!("9007199254740993"))),
        Some(9_007_199_254_740_993)
    );
    assert_eq!(int64_value(Some(&json!("-3"))), Some(-3));
    assert_eq!(int64_value(Some(&json!("1.5"))), None);
    assert_eq!(int64_value(Some(&json!("x"))), None);
    assert_eq!(int64_value(Some(&Value::Null)), None);
    assert_eq!(int64_value(None), None);
}

// ---------------------------------------------------------------------------
// Local inventory.

#[tokio::test(start_paused = true)]
async fn local_inventory_writes_the_store_quantity() {
    let google = Google::new();
    google.seed("nl~NL~L1");
    google.seed("nl~NL~L2");
    google.process();
    let gmc = Gmc::new(
        Config {
            local_inventory: true,
            ..config()
        },
        google.clone(),
    );
    let mut with_store = item("L1", Availability::InStock, 5);
    with_store
        .external
        .insert("store_code".into(), json!("AMS-1"));
    let mut sold_out = item("L2", Availability::OutOfStock, 0);
    sold_out
        .external
        .insert("store_code".into(), json!("AMS-1"));
    let without_store = item("L1", Availability::InStock, 5);
    let outcomes = gmc
        .push(&[with_store.clone(), sold_out, without_store])
        .await
        .expect("push");
    assert_eq!(
        outcomes,
        vec![
            ItemOutcome::Applied { quantity: 5 },
            ItemOutcome::Applied { quantity: 0 },
            ItemOutcome::Applied { quantity: 5 },
        ]
    );
    let api = google.api_requests();
    let inserts: Vec<&HttpRequest> = api
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.url.contains("localInventories"))
        .collect();
    assert_eq!(inserts.len(), 2, "only listings with a store code");
    assert_eq!(inserts[0].method, http::Method::POST);
    assert_eq!(
        inserts[0].url,
        "https://merchantapi.googleapis.com/inventories/v1/accounts/4242/products/nl~NL~L1/localInventories:insert"
    );
    let body = body_of(inserts[0]);
    assert_eq!(
        body,
        json!({"storeCode": "AMS-1",
               "localInventoryAttributes": {"availability": "IN_STOCK", "quantity": "5"}})
    );
    assert_eq!(
        body_of(inserts[1])["localInventoryAttributes"],
        json!({"availability": "OUT_OF_STOCK", "quantity": "0"})
    );
    let proto = spec("inventories_v1/localinventory.proto");
    let common = spec("inventories_v1/inventories_common.proto");
    assert_fields_in(
        &body,
        &proto_fields(&proto, "LocalInventory"),
        "LocalInventory",
    );
    assert_fields_in(
        &body["localInventoryAttributes"],
        &proto_fields(&common, "LocalInventoryAttributes"),
        "LocalInventoryAttributes",
    );
    assert!(common.contains("IN_STOCK = 1;") && common.contains("OUT_OF_STOCK = 4;"));

    // The processed product is needed; right after an insert it is missing.
    google.seed("nl~NL~L3");
    let mut fresh = item("L3", Availability::InStock, 2);
    fresh.external.insert("store_code".into(), json!("AMS-1"));
    let outcomes = gmc.push(&[fresh]).await.expect("push");
    let error = failed(&outcomes[0]);
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Retryable, "not_processed")
    );

    // Disabled: no local inventory calls even with a store code.
    let plain = connector(&google);
    let before = google.api_requests().len();
    plain.push(&[with_store]).await.expect("push");
    let after = google.api_requests();
    assert_eq!(after.len(), before + 1);
    assert!(after[before].1.url.contains("/productInputs/"));
    google.assert_clean();
}

// ---------------------------------------------------------------------------
// Webhooks.

#[test]
fn webhooks_are_refused() {
    let google = Google::new();
    let gmc = connector(&google);
    assert_eq!(
        gmc.webhook(&http::HeaderMap::new(), b"{}"),
        Err(WebhookError::BadSignature)
    );
    assert!(google.requests().is_empty());
}
