//! Google Merchant Center simulator: Merchant API v1 (note §3, checklist §3.8).
//!
//! Emulated: the Google OAuth token endpoint `POST /token` for the service-account JWT bearer
//! grant (RS256 signature, `iss`/`scope`/`aud`/`iat`/`exp` checks, expiring access tokens),
//! self-signed JWTs as bearer tokens (what Google's client libraries send by default), and
//! Bearer auth with Google's error JSON (§3.2, §3.8.1); Products v1 `productInputs:insert`
//! (upsert with `versionNumber` ordering), `productInputs` PATCH (`updateMask` semantics) and
//! DELETE, and processed `products` get/list that show a write only after a configurable
//! processing delay (§3.3); Inventories v1 local inventories insert/list/delete, replaced by
//! `storeCode`, visible after a configurable delay (§3.4); int64 fields accepted as number or
//! string and emitted as strings; per-method per-minute and per-day quotas with
//! `quota/request_rate_too_high` / `quota/daily_limit_exceeded`, the "twice per day" per-product
//! update policy and `quota/v1/…/quotas` (§3.6); Content API v2.1 answering 410 Gone (§3.1).
//! Merchant Center takes no orders (§3.7): `buy`, `cancel` and `refund` are refused.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::common::{
    lock, parse_form_urlencoded, percent_decode, retry_after_value, serve_channel, sim_router,
    Counters, Injected, NewListing, Plus, RunningSim, SimBackend, SimCore, SimError, SimListing,
};

/// The only OAuth scope the Merchant API takes (§3.2).
pub const SCOPE: &str = "https://www.googleapis.com/auth/content";
/// Google's token endpoint, the `aud` a service-account JWT names.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The `aud` of a self-signed JWT access token for the Merchant API.
pub const MERCHANT_API_AUDIENCE: &str = "https://merchantapi.googleapis.com/";
/// The JWT bearer grant type (RFC 7523).
pub const JWT_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Merchant Center account id (`accounts/{account_id}`).
    pub account_id: u64,
    /// The API data source; requests must name `accounts/{account_id}/dataSources/{data_source_id}`.
    pub data_source_id: u64,
    /// `iss` the service-account JWT must carry.
    pub service_account_email: String,
    /// The service account's RSA public key: PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or DER
    /// (SubjectPublicKeyInfo or PKCS#1). `None` skips the signature check (demos without a
    /// key pair); algorithm and claims are still checked.
    pub public_key: Option<Vec<u8>>,
    /// Access-token lifetime (3600 s is UNCONFIRMED, §3.2).
    pub token_ttl_secs: u64,
    /// Time before a product input write shows on the processed product ("several minutes" in
    /// reality, §3.3).
    pub processing_delay: Duration,
    /// Time before a local-inventory write or delete shows ("up to 30 min" in reality, §3.4).
    pub inventory_delay: Duration,
    /// Updates of one product allowed per 24 h ("twice per day", §3.6); 0 disables the check.
    pub updates_per_product_per_day: u32,
    /// Per-method requests per minute. Google publishes no numbers (quotas are adjusted
    /// automatically, §3.6): this default is a choice.
    pub requests_per_minute: u32,
    /// Per-method requests per day; a choice as above.
    pub requests_per_day: u32,
    /// Content language and feed label of listings made by `add_listings`.
    pub content_language: String,
    pub feed_label: String,
    /// When set, `add_listings` also creates a local inventory at this store, listings carry
    /// `store_code` and their quantity is that store's quantity.
    pub store_code: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            account_id: 123_456_789,
            data_source_id: 10_001,
            service_account_email: "stockd@stockd-sim.iam.gserviceaccount.com".into(),
            public_key: None,
            token_ttl_secs: 3600,
            processing_delay: Duration::from_millis(100),
            inventory_delay: Duration::from_millis(100),
            updates_per_product_per_day: 2,
            requests_per_minute: 300,
            requests_per_day: 100_000,
            content_language: "nl".into(),
            feed_label: "NL".into(),
            store_code: None,
        }
    }
}

/// Counters only this channel has, next to [`crate::SimStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GmcStats {
    /// Requests to the sunset Content API v2.1 (`/content/v2.1/…`); a correct client sends none.
    pub content_api_requests: u64,
    pub tokens_issued: u64,
    /// Token requests refused (bad JWT, claims, grant type).
    pub token_rejections: u64,
    /// API requests refused for a missing, unknown or expired access token.
    pub auth_failures: u64,
    /// Product updates refused by the per-product daily policy.
    pub product_budget_violations: u64,
}

#[derive(Default)]
struct GmcCounters {
    content_api_requests: AtomicU64,
    tokens_issued: AtomicU64,
    token_rejections: AtomicU64,
    auth_failures: AtomicU64,
    product_budget_violations: AtomicU64,
}

impl GmcCounters {
    fn snapshot(&self) -> GmcStats {
        GmcStats {
            content_api_requests: self.content_api_requests.load(Ordering::Relaxed),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            token_rejections: self.token_rejections.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            product_budget_violations: self.product_budget_violations.load(Ordering::Relaxed),
        }
    }
}

/// This channel's own counters for a simulator started by [`start`] (also served at
/// `GET /_sim/gmc/stats`); `None` for any other simulator.
pub fn gmc_stats(sim: &RunningSim) -> Option<GmcStats> {
    sim.channel::<Gmc>().map(|g| g.counters.snapshot())
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let key = match &config.public_key {
        Some(raw) => Some(rsa_public_key(raw).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "public_key is not an RSA public key in PEM or DER form",
            )
        })?),
        None => None,
    };
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let sim = Arc::new(Gmc {
        config,
        key,
        core,
        base_url,
        counters: GmcCounters::default(),
        state: Mutex::new(State::default()),
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let sim_for_handle = sim.clone();
    let router = Router::new()
        .route("/_sim/gmc/stats", get(gmc_stats_handler))
        .route("/token", any(token_handler))
        .route("/content/{*rest}", any(content_handler))
        .route("/products/v1/{*rest}", any(api_handler))
        .route("/inventories/v1/{*rest}", any(api_handler))
        .route("/quota/v1/{*rest}", any(api_handler))
        .with_state(sim)
        .merge(sim_router(backend.clone()))
        .fallback(|| async { not_found_route() });
    serve_channel(router, listener, sim_for_handle)
}

// ---------------------------------------------------------------------------------------------
// State

/// A value whose writes become visible after a delay; `None` is a delete.
#[derive(Debug, Clone, Default)]
struct Delayed {
    visible: Option<Value>,
    pending: VecDeque<(Instant, Option<Value>)>,
}

impl Delayed {
    fn now(v: Value) -> Delayed {
        Delayed {
            visible: Some(v),
            pending: VecDeque::new(),
        }
    }
    fn settle(&mut self, now: Instant) {
        while let Some((at, _)) = self.pending.front() {
            if *at > now {
                break;
            }
            if let Some((_, v)) = self.pending.pop_front() {
                self.visible = v;
            }
        }
    }
    fn push(&mut self, at: Instant, v: Option<Value>) {
        // Delays are constant, so pending writes stay in time order.
        self.pending.push_back((at, v));
    }
    /// The latest write, visible or not.
    fn latest(&self) -> Option<&Value> {
        match self.pending.back() {
            Some((_, v)) => v.as_ref(),
            None => self.visible.as_ref(),
        }
    }
}

struct Entry {
    /// `contentLanguage~feedLabel~offerId` (or `local~…` for legacy local products).
    key: String,
    offer_id: String,
    /// The product input as written, `None` once deleted.
    input: Option<Value>,
    version_number: Option<i64>,
    processed: Delayed,
    local: BTreeMap<String, Delayed>,
    updates: VecDeque<Instant>,
}

#[derive(Default)]
struct MethodQuota {
    minute: VecDeque<Instant>,
    day_start: Option<Instant>,
    day_count: u64,
}

#[derive(Default)]
struct State {
    products: BTreeMap<String, Entry>,
    tokens: HashMap<String, Instant>,
    quotas: BTreeMap<&'static str, MethodQuota>,
}

struct Gmc {
    config: Config,
    key: Option<Vec<u8>>,
    core: Arc<SimCore>,
    base_url: String,
    counters: GmcCounters,
    state: Mutex<State>,
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const MINUTE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Google error JSON (§3.6; specifics UNCONFIRMED)

fn gerr(code: StatusCode, status: &str, message: &str) -> Response {
    (
        code,
        Json(json!({"error": {"code": code.as_u16(), "message": message, "status": status}})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    gerr(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

fn not_found() -> Response {
    gerr(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Requested entity was not found.",
    )
}

fn not_found_route() -> Response {
    gerr(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested URL was not found on this server.",
    )
}

fn quota_error(reason: &str, message: &str) -> Response {
    // 429 / RESOURCE_EXHAUSTED is the Google standard mapping (UNCONFIRMED, §3.6).
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": {
            "code": 429,
            "message": format!("[{reason}] {message}"),
            "status": "RESOURCE_EXHAUSTED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "merchantapi.googleapis.com"
            }]
        }})),
    )
        .into_response()
}

fn unauthenticated(message: &str) -> Response {
    let mut r = gerr(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
    );
    r
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Small codecs

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    // Unpadded base64url per the note (§3.3); padding is tolerated.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn b64url(s: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn form_get<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One DER TLV: (tag, content, rest).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first & 0x80 == 0 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[hdr..end], &b[end..]))
}

const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The PKCS#1 `RSAPublicKey` inside a SubjectPublicKeyInfo, which is what ring verifies with.
fn spki_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, spki, _) = der_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, rest) = der_tlv(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_tlv(alg)?;
    if tag != 0x06 || oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (tag, bits, _) = der_tlv(rest)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    Some(bits[1..].to_vec())
}

/// Whether `der` is a PKCS#1 `RSAPublicKey`: SEQUENCE { INTEGER n, INTEGER e }.
fn is_pkcs1(der: &[u8]) -> bool {
    let Some((0x30, seq, _)) = der_tlv(der) else {
        return false;
    };
    let Some((0x02, _, rest)) = der_tlv(seq) else {
        return false;
    };
    matches!(der_tlv(rest), Some((0x02, _, tail)) if tail.is_empty())
}

/// Accept PEM or DER, SubjectPublicKeyInfo or PKCS#1; return PKCS#1 DER.
fn rsa_public_key(raw: &[u8]) -> Option<Vec<u8>> {
    let der = match std::str::from_utf8(raw) {
        Ok(text) if text.contains("-----BEGIN") => {
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::trim)
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?
        }
        _ => raw.to_vec(),
    };
    if let Some(k) = spki_to_pkcs1(&der) {
        return Some(k);
    }
    is_pkcs1(&der).then_some(der)
}

// ---------------------------------------------------------------------------------------------
// Token endpoint (§3.2; Google's OAuth error strings are UNCONFIRMED)

async fn token_handler(AxState(sim): AxState<Arc<Gmc>>, req: Request) -> Response {
    Counters::add(&sim.core.counters.requests, 1);
    let resp = sim.token(req).await;
    if !resp.status().is_success() {
        Counters::add(&sim.counters.token_rejections, 1);
    }
    resp
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Gmc {
    async fn token(&self, req: Request) -> Response {
        if req.method() != Method::POST {
            return oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "Token requests must use POST.",
            );
        }
        let Ok(body) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Body too large.",
            );
        };
        let form = parse_form_urlencoded(&String::from_utf8_lossy(&body));
        match form_get(&form, "grant_type") {
            Some(JWT_GRANT_TYPE) => {}
            Some(other) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    &format!("Invalid grant_type: {other}"),
                )
            }
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: grant_type",
                )
            }
        }
        let Some(assertion) = form_get(&form, "assertion") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        if let Err((error, description)) = self.verify_jwt(assertion, now_secs()) {
            return oauth_error(StatusCode::BAD_REQUEST, error, &description);
        }
        let token = format!(
            "ya29.sim-{:016x}{:016x}",
            self.core.rand_u64(),
            self.core.rand_u64()
        );
        let ttl = self.config.token_ttl_secs;
        {
            let mut st = lock(&self.state);
            let now = Instant::now();
            st.tokens.retain(|_, exp| *exp > now);
            st.tokens
                .insert(token.clone(), now + Duration::from_secs(ttl));
        }
        Counters::add(&self.counters.tokens_issued, 1);
        Json(json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}))
            .into_response()
    }

    /// Check a service-account JWT (RFC 7523): RS256 over `header.payload` with the configured
    /// key; `iss` = the service account, `scope` containing [`SCOPE`], `aud` = the token URL,
    /// `iat`/`exp` at most one hour apart and current.
    fn verify_jwt(&self, jwt: &str, now: i64) -> Result<(), (&'static str, String)> {
        let claims = self.signed_claims(jwt)?;
        let s = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
        if s("iss") != self.config.service_account_email {
            return Err(("invalid_grant", "Invalid grant: account not found".into()));
        }
        // Connectors name either Google's token URL or the URL they actually post to.
        let own = format!("{}/token", self.base_url);
        let aud = s("aud");
        if aud != GOOGLE_TOKEN_URL && aud != own {
            return Err((
                "invalid_grant",
                format!("Invalid JWT: aud must be {GOOGLE_TOKEN_URL}"),
            ));
        }
        if !s("scope").split(' ').any(|x| x == SCOPE) {
            return Err((
                "invalid_scope",
                format!("Invalid OAuth scope: {SCOPE} is required"),
            ));
        }
        jwt_timeframe(&claims, now)
    }

    /// Check a self-signed JWT sent as the bearer token itself (Google accepts
    /// these from service accounts: claims `iss` = `sub` = the account, and
    /// either `scope` or `aud` = the API's service URL;
    /// <https://developers.google.com/identity/protocols/oauth2/service-account#jwt-auth>).
    fn verify_access_jwt(&self, jwt: &str, now: i64) -> bool {
        let Ok(claims) = self.signed_claims(jwt) else {
            return false;
        };
        let s = |k: &str| claims.get(k).and_then(Value::as_str);
        let account = self.config.service_account_email.as_str();
        let scoped = s("scope").is_some_and(|sc| sc.split(' ').any(|x| x == SCOPE));
        let audience = s("aud").is_some_and(|aud| {
            let aud = aud.trim_end_matches('/');
            aud == MERCHANT_API_AUDIENCE.trim_end_matches('/') || aud == self.base_url
        });
        s("iss") == Some(account)
            && s("sub").is_none_or(|sub| sub == account)
            && (scoped || audience)
            && jwt_timeframe(&claims, now).is_ok()
    }

    /// The claims of an RS256 JWT whose signature the configured key verifies.
    fn signed_claims(&self, jwt: &str) -> Result<Value, (&'static str, String)> {
        let bad_sig = || ("invalid_grant", "Invalid JWT Signature.".to_string());
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err(("invalid_grant", "Invalid JWT: malformed assertion.".into()));
        }
        let header: Value = b64url_decode(parts[0])
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(("invalid_grant", "Invalid JWT: bad header.".to_string()))?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(bad_sig());
        }
        let sig = b64url_decode(parts[2]).ok_or_else(bad_sig)?;
        if let Some(key) = &self.key {
            let signed = &jwt[..parts[0].len() + 1 + parts[1].len()];
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                key,
            )
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| bad_sig())?;
        }
        b64url_decode(parts[1])
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(("invalid_grant", "Invalid JWT: bad claim set.".to_string()))
    }
}

/// `iat`/`exp` present, current, and at most one hour apart.
fn jwt_timeframe(claims: &Value, now: i64) -> Result<(), (&'static str, String)> {
    let timeframe = || {
        (
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".to_string(),
        )
    };
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(timeframe)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(timeframe)?;
    // Skew allowance of 60 s is a choice.
    if exp <= now || iat > now + 60 || exp < iat || exp - iat > 3600 {
        return Err(timeframe());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Content API v2.1: sunset (§3.1)

async fn content_handler(AxState(sim): AxState<Arc<Gmc>>) -> Response {
    Counters::add(&sim.core.counters.requests, 1);
    Counters::add(&sim.counters.content_api_requests, 1);
    // 410 with the Google error shape (§3.6); the status string is UNCONFIRMED.
    gerr(
        StatusCode::GONE,
        "NOT_FOUND",
        "Content API for Shopping has been sunset. Migrate to Merchant API: https://developers.google.com/merchant/api",
    )
}

async fn gmc_stats_handler(AxState(sim): AxState<Arc<Gmc>>) -> Response {
    Json(sim.counters.snapshot()).into_response()
}

// ---------------------------------------------------------------------------------------------
// Product names, int64 and enums (§3.3, §3.4)

/// A decoded `{productinput}` / `{product}` path id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProductId {
    legacy_local: bool,
    content_language: String,
    feed_label: String,
    offer_id: String,
}

impl ProductId {
    fn key(&self) -> String {
        let plain = format!(
            "{}~{}~{}",
            self.content_language, self.feed_label, self.offer_id
        );
        if self.legacy_local {
            format!("local~{plain}")
        } else {
            plain
        }
    }
}

/// `lang~label~offerId` (a `~` marks the plain form) or its unpadded base64url (§3.3).
fn decode_product_id(seg: &str) -> Option<ProductId> {
    let (plain, encoded) = if seg.contains('~') {
        (seg.to_string(), false)
    } else {
        (String::from_utf8(b64url_decode(seg)?).ok()?, true)
    };
    let (legacy_local, rest) = match plain.strip_prefix("local~") {
        Some(rest) => (true, rest),
        None => (false, plain.as_str()),
    };
    let mut parts = rest.splitn(3, '~');
    let lang = parts.next()?.to_string();
    let label = parts.next()?.to_string();
    let offer = parts.next()?.to_string();
    // In the plain form the offer id itself cannot hold `~`, `/` or `%` (§3.3).
    if lang.is_empty()
        || label.is_empty()
        || offer.is_empty()
        || (!encoded && offer.contains(['~', '/', '%']))
    {
        return None;
    }
    Some(ProductId {
        legacy_local,
        content_language: lang,
        feed_label: label,
        offer_id: offer,
    })
}

/// int64 fields of the v1 protos (products_common, types, inventories_common): proto3 JSON
/// writes them as strings; numbers are accepted on input (§3.8.6).
const INT64_FIELDS: &[&str] = &[
    "amountMicros",
    "sellOnGoogleQuantity",
    "quantity",
    "multipack",
    "maxHandlingTime",
    "minHandlingTime",
    "minTransitTime",
    "maxTransitTime",
    "fixedMinTransitTime",
    "fixedMaxTransitTime",
    "numberOfUnits",
    "loyaltyPoints",
    "pointsValue",
    "periodLength",
    "months",
    "year",
    "locationId",
    "versionNumber",
];

fn normalize_int64(v: &mut Value, path: &str) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if INT64_FIELDS.contains(&k.as_str()) {
                    let n = match &*x {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.trim().parse::<i64>().ok(),
                        Value::Null => continue,
                        _ => None,
                    };
                    match n {
                        Some(n) => *x = Value::String(n.to_string()),
                        None => return Err(format!("Invalid value at '{p}': not an int64")),
                    }
                } else {
                    normalize_int64(x, &p)?;
                }
            }
            Ok(())
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                normalize_int64(x, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validate an enum field against its names (proto3 JSON also takes the numbers).
fn check_enum(
    m: &mut Map<String, Value>,
    field: &str,
    names: &[&str],
    path: &str,
) -> Result<(), String> {
    let Some(v) = m.get(field) else {
        return Ok(());
    };
    let name = match v {
        Value::String(s) if names.contains(&s.as_str()) => s.clone(),
        Value::Number(n) => match n.as_u64().and_then(|i| names.get(i as usize)) {
            Some(s) => s.to_string(),
            None => return Err(format!("Invalid value at '{path}.{field}'")),
        },
        Value::Null => return Ok(()),
        other => return Err(format!("Invalid value at '{path}.{field}' ({other})")),
    };
    m.insert(field.into(), Value::String(name));
    Ok(())
}

/// products_common.proto `Availability`, in enum-number order.
const AVAILABILITY: &[&str] = &[
    "AVAILABILITY_UNSPECIFIED",
    "IN_STOCK",
    "OUT_OF_STOCK",
    "PREORDER",
    "LIMITED_AVAILABILITY",
    "BACKORDER",
];
const LOCAL_AVAILABILITY: &[&str] = &[
    "LOCAL_INVENTORY_AVAILABILITY_UNSPECIFIED",
    "IN_STOCK",
    "LIMITED_AVAILABILITY",
    "ON_DISPLAY_TO_ORDER",
    "OUT_OF_STOCK",
];
const PICKUP_METHOD: &[&str] = &[
    "PICKUP_METHOD_UNSPECIFIED",
    "BUY",
    "RESERVE",
    "SHIP_TO_STORE",
    "NOT_SUPPORTED",
];
const PICKUP_SLA: &[&str] = &[
    "PICKUP_SLA_UNSPECIFIED",
    "SAME_DAY",
    "NEXT_DAY",
    "TWO_DAY",
    "THREE_DAY",
    "FOUR_DAY",
    "FIVE_DAY",
    "SIX_DAY",
    "SEVEN_DAY",
    "MULTI_WEEK",
];

fn check_timestamp(m: &Map<String, Value>, field: &str, path: &str) -> Result<(), String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
        Some(_) => Err(format!(
            "Invalid value at '{path}.{field}': not an RFC 3339 timestamp"
        )),
    }
}

fn check_product_attributes(input: &mut Map<String, Value>) -> Result<(), String> {
    let Some(attrs) = input.get_mut("productAttributes") else {
        return Ok(());
    };
    let Value::Object(a) = attrs else {
        return Err("Invalid value at 'productAttributes': not an object".into());
    };
    check_enum(a, "availability", AVAILABILITY, "productAttributes")?;
    check_timestamp(a, "availabilityDate", "productAttributes")?;
    if let Some(Value::String(q)) = a.get("sellOnGoogleQuantity") {
        if q.starts_with('-') {
            return Err("productAttributes.sellOnGoogleQuantity must be >= 0".into());
        }
    }
    Ok(())
}

fn check_local_attributes(attrs: &mut Map<String, Value>) -> Result<(), String> {
    let p = "localInventoryAttributes";
    check_enum(attrs, "availability", LOCAL_AVAILABILITY, p)?;
    check_enum(attrs, "pickupMethod", PICKUP_METHOD, p)?;
    check_enum(attrs, "pickupSla", PICKUP_SLA, p)?;
    if let Some(Value::String(q)) = attrs.get("quantity") {
        if q.starts_with('-') {
            return Err(format!("{p}.quantity must be >= 0"));
        }
    }
    // A pickup method must come with a pickup SLA and vice versa (§3.4).
    let has = |k: &str| attrs.get(k).is_some_and(|v| !v.is_null());
    if has("pickupMethod") != has("pickupSla") {
        return Err(format!(
            "{p}.pickupMethod and {p}.pickupSla must be set together"
        ));
    }
    if let Some(Value::String(loc)) = attrs.get("instoreProductLocation") {
        if loc.len() > 20 {
            return Err(format!(
                "{p}.instoreProductLocation is longer than 20 bytes"
            ));
        }
    }
    Ok(())
}

fn valid_feed_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `sell_on_google_quantity` → `sellOnGoogleQuantity`, for field-mask paths.
fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn listing_availability(product: &Value) -> &'static str {
    match product
        .pointer("/productAttributes/availability")
        .and_then(Value::as_str)
    {
        Some("IN_STOCK") | Some("LIMITED_AVAILABILITY") => "in_stock",
        Some("BACKORDER") | Some("PREORDER") => "backorder",
        _ => "out_of_stock",
    }
}

fn int64_of(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// The API

enum Route {
    InsertInput,
    PatchInput(String),
    DeleteInput(String),
    GetProduct(String),
    ListProducts,
    InsertLocal(String),
    ListLocal(String),
    DeleteLocal(String, String),
    ListQuotas,
}

/// Route a request to its method; also returns the quota method name and the account id.
fn route(method: &Method, segs: &[String]) -> Option<(Route, &'static str, String)> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let (r, name, acct) = match (m, s.as_slice()) {
        ("POST", ["products", "v1", "accounts", a, "productInputs:insert"]) => {
            (Route::InsertInput, "productInputs.insert", a)
        }
        ("PATCH", ["products", "v1", "accounts", a, "productInputs", id]) => {
            (Route::PatchInput(id.to_string()), "productInputs.patch", a)
        }
        ("DELETE", ["products", "v1", "accounts", a, "productInputs", id]) => (
            Route::DeleteInput(id.to_string()),
            "productInputs.delete",
            a,
        ),
        ("GET", ["products", "v1", "accounts", a, "products", id]) => {
            (Route::GetProduct(id.to_string()), "products.get", a)
        }
        ("GET", ["products", "v1", "accounts", a, "products"]) => {
            (Route::ListProducts, "products.list", a)
        }
        (
            "POST",
            ["inventories", "v1", "accounts", a, "products", id, "localInventories:insert"],
        ) => (
            Route::InsertLocal(id.to_string()),
            "localInventories.insert",
            a,
        ),
        ("GET", ["inventories", "v1", "accounts", a, "products", id, "localInventories"]) => {
            (Route::ListLocal(id.to_string()), "localInventories.list", a)
        }
        (
            "DELETE",
            ["inventories", "v1", "accounts", a, "products", id, "localInventories", store],
        ) => (
            Route::DeleteLocal(id.to_string(), store.to_string()),
            "localInventories.delete",
            a,
        ),
        ("GET", ["quota", "v1", "accounts", a, "quotas"]) => (Route::ListQuotas, "quotas.list", a),
        _ => return None,
    };
    Some((r, name, acct.to_string()))
}

/// Every quota method, with the sub-API and REST path reported by `quotas.list`.
const METHODS: &[(&str, &str, &str)] = &[
    (
        "productInputs.insert",
        "products",
        "v1/{parent=accounts/*}/productInputs:insert",
    ),
    (
        "productInputs.patch",
        "products",
        "v1/{productInput.name=accounts/*/productInputs/*}",
    ),
    (
        "productInputs.delete",
        "products",
        "v1/{name=accounts/*/productInputs/*}",
    ),
    (
        "products.get",
        "products",
        "v1/{name=accounts/*/products/*}",
    ),
    (
        "products.list",
        "products",
        "v1/{parent=accounts/*}/products",
    ),
    (
        "localInventories.insert",
        "inventories",
        "v1/{parent=accounts/*/products/*}/localInventories:insert",
    ),
    (
        "localInventories.list",
        "inventories",
        "v1/{parent=accounts/*/products/*}/localInventories",
    ),
    (
        "localInventories.delete",
        "inventories",
        "v1/{name=accounts/*/products/*/localInventories/*}",
    ),
    ("quotas.list", "quota", "v1/{parent=accounts/*}/quotas"),
];

async fn api_handler(AxState(sim): AxState<Arc<Gmc>>, req: Request) -> Response {
    if let Some(inj) = sim.core.intercept().await {
        return match inj {
            Injected::Outage => gerr(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            ),
            Injected::ServerError => gerr(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
            ),
            Injected::Throttle { retry_after } => {
                let mut r = quota_error(
                    "quota/request_rate_too_high",
                    "Request rate too high. Retry later.",
                );
                if let Some(secs) = retry_after {
                    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs)) {
                        r.headers_mut().insert("retry-after", v);
                    }
                }
                r
            }
        };
    }
    let method = req.method().clone();
    let segs: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, Plus::Literal))
        .collect();
    let query = parse_form_urlencoded(req.uri().query().unwrap_or(""));
    if let Err(r) = sim.check_bearer(req.headers()) {
        Counters::add(&sim.counters.auth_failures, 1);
        return *r;
    }
    let Some((route, quota_method, account)) = route(&method, &segs) else {
        return not_found_route();
    };
    if account != sim.config.account_id.to_string() {
        return gerr(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("The caller does not have access to the accounts: [{account}]"),
        );
    }
    if let Some(r) = sim.charge(quota_method) {
        Counters::add(&sim.core.counters.rate_limit_violations, 1);
        return r;
    }
    let body_bytes = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(_) => return invalid("Request payload is too large."),
    };
    let body: Value = if body_bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body_bytes) {
            Ok(v) => v,
            Err(e) => return invalid(&format!("Invalid JSON payload received. {e}")),
        }
    };
    match route {
        Route::InsertInput => sim.insert_input(&query, body),
        Route::PatchInput(id) => sim.patch_input(&id, &query, body),
        Route::DeleteInput(id) => sim.delete_input(&id, &query),
        Route::GetProduct(id) => sim.get_product(&id),
        Route::ListProducts => sim.list_products(&query),
        Route::InsertLocal(id) => sim.insert_local(&id, body),
        Route::ListLocal(id) => sim.list_local(&id, &query),
        Route::DeleteLocal(id, store) => sim.delete_local(&id, &store),
        Route::ListQuotas => sim.list_quotas(),
    }
}

fn paging(
    query: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<(usize, usize), Box<Response>> {
    let size = match form_get(query, "pageSize") {
        None | Some("") => default,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return Err(Box::new(invalid("pageSize must not be negative"))),
            Ok(0) => default,
            Ok(n) => (n as usize).min(max),
            Err(_) => return Err(Box::new(invalid("Invalid value for pageSize"))),
        },
    };
    let offset = match form_get(query, "pageToken") {
        None | Some("") => 0,
        Some(t) => match b64url_decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
        {
            Some(n) => n,
            None => return Err(Box::new(invalid("Invalid page token."))),
        },
    };
    Ok((size, offset))
}

fn page_token(next: usize) -> String {
    b64url(format!("o:{next}").as_bytes())
}

impl Gmc {
    fn check_bearer(&self, headers: &axum::http::HeaderMap) -> Result<(), Box<Response>> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Err(Box::new(unauthenticated(
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )));
        };
        if token.matches('.').count() == 2 && self.verify_access_jwt(token, now_secs()) {
            return Ok(());
        }
        let st = lock(&self.state);
        match st.tokens.get(token) {
            Some(exp) if *exp > Instant::now() => Ok(()),
            _ => Err(Box::new(unauthenticated(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ))),
        }
    }

    /// Charge one call to a method's per-minute and per-day quota (§3.6).
    fn charge(&self, method: &'static str) -> Option<Response> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let q = st.quotas.entry(method).or_default();
        while q
            .minute
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            q.minute.pop_front();
        }
        if q.day_start.is_none_or(|s| now.duration_since(s) >= DAY) {
            q.day_start = Some(now);
            q.day_count = 0;
        }
        if q.day_count >= u64::from(self.config.requests_per_day) {
            return Some(quota_error(
                "quota/daily_limit_exceeded",
                &format!("Daily quota for {method} exceeded."),
            ));
        }
        if q.minute.len() >= self.config.requests_per_minute as usize {
            return Some(quota_error(
                "quota/request_rate_too_high",
                &format!("Per-minute quota for {method} exceeded."),
            ));
        }
        q.minute.push_back(now);
        q.day_count += 1;
        None
    }

    fn data_source_name(&self) -> String {
        format!(
            "accounts/{}/dataSources/{}",
            self.config.account_id, self.config.data_source_id
        )
    }

    fn check_data_source(&self, query: &[(String, String)]) -> Result<String, Box<Response>> {
        match form_get(query, "dataSource") {
            None | Some("") => Err(Box::new(invalid("Required parameter: dataSource"))),
            Some(ds) if ds == self.data_source_name() => Ok(ds.to_string()),
            Some(ds) => Err(Box::new(gerr(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Data source {ds} not found."),
            ))),
        }
    }

    fn input_json(&self, id: &ProductId, mut input: Map<String, Value>) -> Value {
        let key = id.key();
        let a = self.config.account_id;
        input.insert(
            "name".into(),
            json!(format!("accounts/{a}/productInputs/{key}")),
        );
        input.insert(
            "base64EncodedName".into(),
            json!(format!(
                "accounts/{a}/productInputs/{}",
                b64url(key.as_bytes())
            )),
        );
        input.insert(
            "product".into(),
            json!(format!("accounts/{a}/products/{key}")),
        );
        input.insert(
            "base64EncodedProduct".into(),
            json!(format!("accounts/{a}/products/{}", b64url(key.as_bytes()))),
        );
        input.insert("offerId".into(), json!(id.offer_id));
        input.insert("contentLanguage".into(), json!(id.content_language));
        input.insert("feedLabel".into(), json!(id.feed_label));
        if id.legacy_local {
            input.insert("legacyLocal".into(), json!(true));
        }
        Value::Object(input)
    }

    /// The processed product for a product input (products.proto `Product`).
    fn processed_json(&self, id: &ProductId, input: &Value, data_source: &str) -> Value {
        let key = id.key();
        let a = self.config.account_id;
        let mut p = Map::new();
        p.insert("name".into(), json!(format!("accounts/{a}/products/{key}")));
        p.insert(
            "base64EncodedName".into(),
            json!(format!("accounts/{a}/products/{}", b64url(key.as_bytes()))),
        );
        if id.legacy_local {
            p.insert("legacyLocal".into(), json!(true));
        }
        p.insert("offerId".into(), json!(id.offer_id));
        p.insert("contentLanguage".into(), json!(id.content_language));
        p.insert("feedLabel".into(), json!(id.feed_label));
        p.insert("dataSource".into(), json!(data_source));
        if let Some(v) = input.get("versionNumber") {
            p.insert("versionNumber".into(), v.clone());
        }
        p.insert(
            "productAttributes".into(),
            input.get("productAttributes").cloned().unwrap_or(json!({})),
        );
        if let Some(c) = input.get("customAttributes") {
            p.insert("customAttributes".into(), c.clone());
        }
        p.insert("productStatus".into(), json!({}));
        Value::Object(p)
    }

    /// The "twice per day" per-product update policy (§3.6); the error is a choice
    /// (UNCONFIRMED: Google does not document how the policy is enforced).
    fn spend_budget(&self, e: &mut Entry, now: Instant) -> Result<(), Box<Response>> {
        let limit = self.config.updates_per_product_per_day;
        if limit == 0 {
            return Ok(());
        }
        while e
            .updates
            .front()
            .is_some_and(|t| now.duration_since(*t) >= DAY)
        {
            e.updates.pop_front();
        }
        if e.updates.len() >= limit as usize {
            Counters::add(&self.core.counters.rate_limit_violations, 1);
            Counters::add(&self.counters.product_budget_violations, 1);
            return Err(Box::new(quota_error(
                "quota/daily_limit_exceeded",
                &format!(
                    "Product {} was already updated {limit} times in the last 24 hours.",
                    e.key
                ),
            )));
        }
        e.updates.push_back(now);
        Ok(())
    }

    fn insert_input(&self, query: &[(String, String)], body: Value) -> Response {
        let ds = match self.check_data_source(query) {
            Ok(ds) => ds,
            Err(r) => return *r,
        };
        let Value::Object(mut input) = body else {
            return invalid("The request body must be a ProductInput object.");
        };
        for k in [
            "name",
            "base64EncodedName",
            "product",
            "base64EncodedProduct",
        ] {
            input.remove(k);
        }
        let mut parts = Vec::new();
        for k in ["contentLanguage", "feedLabel", "offerId"] {
            match input.get(k).and_then(Value::as_str) {
                Some(v) if !v.is_empty() => parts.push(v.to_string()),
                _ => return invalid(&format!("Required field: {k}")),
            }
        }
        if !valid_feed_label(&parts[1]) {
            return invalid("feedLabel must be at most 20 characters of A-Z, 0-9, '-' and '_'.");
        }
        let mut v = Value::Object(input);
        if let Err(e) = normalize_int64(&mut v, "") {
            return invalid(&e);
        }
        let Value::Object(mut input) = v else {
            return invalid("The request body must be a ProductInput object.");
        };
        if let Err(e) = check_product_attributes(&mut input) {
            return invalid(&e);
        }
        let id = ProductId {
            legacy_local: input
                .get("legacyLocal")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            content_language: parts[0].clone(),
            feed_label: parts[1].clone(),
            offer_id: parts[2].clone(),
        };
        if self.core.rejects_sku(&id.offer_id) {
            return invalid(&format!(
                "Offer {} was rejected: invalid product data.",
                id.offer_id
            ));
        }
        let version = input.get("versionNumber").map(|v| int64_of(Some(v)));
        let key = id.key();
        let now = Instant::now();
        let mut st = lock(&self.state);
        let e = st.products.entry(key.clone()).or_insert_with(|| Entry {
            key: key.clone(),
            offer_id: id.offer_id.clone(),
            input: None,
            version_number: None,
            processed: Delayed::default(),
            local: BTreeMap::new(),
            updates: VecDeque::new(),
        });
        if e.input.is_some() {
            // An insert with a lower version than the stored one is refused (§3.3); an equal
            // one is let through so retries succeed (a choice).
            if let (Some(new), Some(old)) = (version, e.version_number) {
                if new < old {
                    return gerr(
                        StatusCode::CONFLICT,
                        "ABORTED",
                        &format!("versionNumber {new} is lower than the current {old}."),
                    );
                }
            }
            if let Err(r) = self.spend_budget(e, now) {
                return *r;
            }
        }
        let out = self.input_json(&id, input);
        e.input = Some(out.clone());
        if version.is_some() {
            e.version_number = version;
        }
        let processed = self.processed_json(&id, &out, &ds);
        e.processed
            .push(now + self.config.processing_delay, Some(processed));
        Counters::add(&self.core.counters.updates_applied, 1);
        Json(out).into_response()
    }

    fn patch_input(&self, id: &str, query: &[(String, String)], body: Value) -> Response {
        let ds = match self.check_data_source(query) {
            Ok(ds) => ds,
            Err(r) => return *r,
        };
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product input name: {id}"));
        };
        let mut body = body;
        if body.is_null() {
            body = json!({});
        }
        if let Err(e) = normalize_int64(&mut body, "") {
            return invalid(&e);
        }
        let Value::Object(mut patch) = body else {
            return invalid("The request body must be a ProductInput object.");
        };
        for (k, want) in [
            ("offerId", &pid.offer_id),
            ("contentLanguage", &pid.content_language),
            ("feedLabel", &pid.feed_label),
        ] {
            if let Some(v) = patch.get(k).and_then(Value::as_str) {
                if v != want {
                    return invalid(&format!("{k} is immutable and does not match the name."));
                }
            }
        }
        if let Err(e) = check_product_attributes(&mut patch) {
            return invalid(&e);
        }
        if self.core.rejects_sku(&pid.offer_id) {
            return invalid(&format!(
                "Offer {} was rejected: invalid product data.",
                pid.offer_id
            ));
        }
        let mask: Option<Vec<String>> = form_get(query, "updateMask").map(|m| {
            m.split(',')
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| p.split('.').map(camel).collect::<Vec<_>>().join("."))
                .collect()
        });
        let key = pid.key();
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&key) else {
            return not_found();
        };
        let Some(Value::Object(current)) = e.input.clone() else {
            return not_found();
        };
        let mut next = current;
        let new_attrs = patch
            .get("productAttributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut attrs = next
            .get("productAttributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match &mask {
            // No mask: every populated field is written (§3.3).
            None => {
                for (k, v) in new_attrs {
                    attrs.insert(k, v);
                }
                if let Some(c) = patch.get("customAttributes") {
                    next.insert("customAttributes".into(), c.clone());
                }
            }
            Some(paths) => {
                for path in paths {
                    if path == "*" {
                        return invalid("The wildcard '*' is not supported in updateMask.");
                    }
                    if path == "productAttributes" {
                        attrs = new_attrs.clone();
                    } else if let Some(f) = path.strip_prefix("productAttributes.") {
                        // Masked but absent means delete (§3.3).
                        match new_attrs.get(f) {
                            Some(v) => {
                                attrs.insert(f.to_string(), v.clone());
                            }
                            None => {
                                attrs.remove(f);
                            }
                        }
                    } else if path == "customAttributes" {
                        match patch.get("customAttributes") {
                            Some(c) => {
                                next.insert("customAttributes".into(), c.clone());
                            }
                            None => {
                                next.remove("customAttributes");
                            }
                        }
                    } else if let Some(name) = path.strip_prefix("customAttribute.") {
                        let given: Vec<Value> = patch
                            .get("customAttributes")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter(|c| c.get("name").and_then(Value::as_str) == Some(name))
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut list: Vec<Value> = next
                            .get("customAttributes")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        list.retain(|c| c.get("name").and_then(Value::as_str) != Some(name));
                        list.extend(given);
                        next.insert("customAttributes".into(), Value::Array(list));
                    } else {
                        return invalid(&format!("Invalid field mask path: {path}"));
                    }
                }
            }
        }
        next.insert("productAttributes".into(), Value::Object(attrs));
        if let Err(r) = self.spend_budget(e, now) {
            return *r;
        }
        let out = self.input_json(&pid, next);
        e.input = Some(out.clone());
        let processed = self.processed_json(&pid, &out, &ds);
        e.processed
            .push(now + self.config.processing_delay, Some(processed));
        Counters::add(&self.core.counters.updates_applied, 1);
        Json(out).into_response()
    }

    fn delete_input(&self, id: &str, query: &[(String, String)]) -> Response {
        if let Err(r) = self.check_data_source(query) {
            return *r;
        }
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product input name: {id}"));
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&pid.key()) else {
            return not_found();
        };
        if e.input.take().is_none() {
            return not_found();
        }
        e.processed.push(now + self.config.processing_delay, None);
        Json(json!({})).into_response()
    }

    fn get_product(&self, id: &str) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&pid.key()) else {
            return not_found();
        };
        e.processed.settle(now);
        match &e.processed.visible {
            Some(p) => Json(p.clone()).into_response(),
            None => not_found(),
        }
    }

    fn list_products(&self, query: &[(String, String)]) -> Response {
        let (size, offset) = match paging(query, 25, 1000) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let mut all = Vec::new();
        for e in st.products.values_mut() {
            e.processed.settle(now);
            if let Some(p) = &e.processed.visible {
                all.push(p.clone());
            }
        }
        let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
        // Proto3 JSON leaves out empty repeated fields.
        let mut out = if page.is_empty() {
            json!({})
        } else {
            json!({"products": page})
        };
        if offset + size < all.len() {
            out["nextPageToken"] = json!(page_token(offset + size));
        }
        Json(out).into_response()
    }

    fn local_json(&self, key: &str, store: &str, attrs: Value) -> Value {
        let a = self.config.account_id;
        json!({
            "name": format!("accounts/{a}/products/{key}/localInventories/{store}"),
            "account": a.to_string(),
            "storeCode": store,
            "localInventoryAttributes": attrs,
        })
    }

    fn insert_local(&self, id: &str, body: Value) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let mut body = body;
        if let Err(e) = normalize_int64(&mut body, "") {
            return invalid(&e);
        }
        let Value::Object(li) = body else {
            return invalid("The request body must be a LocalInventory object.");
        };
        let store = match li.get("storeCode").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return invalid("Required field: storeCode"),
        };
        let mut attrs = match li.get("localInventoryAttributes") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return invalid("localInventoryAttributes must be an object."),
        };
        if let Err(e) = check_local_attributes(&mut attrs) {
            return invalid(&e);
        }
        if self.core.rejects_sku(&pid.offer_id) {
            return invalid(&format!(
                "Offer {} was rejected: invalid product data.",
                pid.offer_id
            ));
        }
        let key = pid.key();
        let now = Instant::now();
        let out = self.local_json(&key, &store, Value::Object(attrs));
        let mut st = lock(&self.state);
        // Local inventories only for products that exist (§3.8.7).
        let Some(e) = st.products.get_mut(&key).filter(|e| e.input.is_some()) else {
            return not_found();
        };
        e.local
            .entry(store)
            .or_default()
            .push(now + self.config.inventory_delay, Some(out.clone()));
        Counters::add(&self.core.counters.updates_applied, 1);
        Json(out).into_response()
    }

    fn list_local(&self, id: &str, query: &[(String, String)]) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let (size, offset) = match paging(query, 25_000, 25_000) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(e) = st.products.get_mut(&pid.key()) else {
            return not_found();
        };
        let mut all = Vec::new();
        for d in e.local.values_mut() {
            d.settle(now);
            if let Some(v) = &d.visible {
                all.push(v.clone());
            }
        }
        let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
        // Proto3 JSON leaves out empty repeated fields.
        let mut out = if page.is_empty() {
            json!({})
        } else {
            json!({"localInventories": page})
        };
        if offset + size < all.len() {
            out["nextPageToken"] = json!(page_token(offset + size));
        }
        Json(out).into_response()
    }

    fn delete_local(&self, id: &str, store: &str) -> Response {
        let Some(pid) = decode_product_id(id) else {
            return invalid(&format!("Invalid product name: {id}"));
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(d) = st
            .products
            .get_mut(&pid.key())
            .and_then(|e| e.local.get_mut(store))
        else {
            return not_found();
        };
        if d.latest().is_none() {
            return not_found();
        }
        // The delete takes effect after the inventory delay (§3.4).
        d.push(now + self.config.inventory_delay, None);
        Json(json!({})).into_response()
    }

    fn list_quotas(&self) -> Response {
        let now = Instant::now();
        let a = self.config.account_id;
        let st = lock(&self.state);
        let groups: Vec<Value> = METHODS
            .iter()
            .map(|(m, subapi, path)| {
                let usage = st
                    .quotas
                    .get(m)
                    .filter(|q| q.day_start.is_some_and(|s| now.duration_since(s) < DAY))
                    .map(|q| q.day_count)
                    .unwrap_or(0);
                json!({
                    "name": format!("accounts/{a}/quotas/{m}"),
                    "quotaUsage": usage.to_string(),
                    "quotaLimit": self.config.requests_per_day.to_string(),
                    "quotaMinuteLimit": self.config.requests_per_minute.to_string(),
                    "methodDetails": [{"method": m, "version": "v1", "subapi": subapi, "path": path}],
                })
            })
            .collect();
        Json(json!({"quotaGroups": groups})).into_response()
    }

    fn listing_of(&self, e: &mut Entry, now: Instant) -> Option<SimListing> {
        e.processed.settle(now);
        let p = e.processed.visible.as_ref()?;
        let availability = listing_availability(p).to_string();
        let mut quantity = 0;
        for (store, d) in e.local.iter_mut() {
            d.settle(now);
            let counts = match &self.config.store_code {
                Some(s) => s == store,
                None => true,
            };
            if counts {
                quantity += int64_of(
                    d.visible
                        .as_ref()
                        .and_then(|v| v.pointer("/localInventoryAttributes/quantity")),
                );
            }
        }
        let mut external = Map::new();
        external.insert("offer_id".into(), json!(e.offer_id));
        external.insert(
            "content_language".into(),
            p.get("contentLanguage").cloned().unwrap_or(json!("")),
        );
        external.insert(
            "feed_label".into(),
            p.get("feedLabel").cloned().unwrap_or(json!("")),
        );
        if let Some(s) = &self.config.store_code {
            external.insert("store_code".into(), json!(s));
        }
        Some(SimListing {
            sku: e.offer_id.clone(),
            external,
            quantity,
            availability,
        })
    }
}

impl SimBackend for Gmc {
    fn core(&self) -> &Arc<SimCore> {
        &self.core
    }

    fn listings(&self) -> Vec<SimListing> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.products
            .values_mut()
            .filter_map(|e| self.listing_of(e, now))
            .collect()
    }

    /// Listings are created as already-processed products (offer id = SKU), with a local
    /// inventory at `store_code` when configured.
    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing> {
        let now = Instant::now();
        let ds = self.data_source_name();
        let mut out = Vec::new();
        for item in items {
            let id = ProductId {
                legacy_local: false,
                content_language: self.config.content_language.clone(),
                feed_label: self.config.feed_label.clone(),
                offer_id: item.sku.clone(),
            };
            let availability = if item.quantity > 0 {
                "IN_STOCK"
            } else {
                "OUT_OF_STOCK"
            };
            let mut input = Map::new();
            input.insert(
                "productAttributes".into(),
                json!({"availability": availability}),
            );
            let input = self.input_json(&id, input);
            let processed = self.processed_json(&id, &input, &ds);
            let key = id.key();
            let mut local = BTreeMap::new();
            if let Some(store) = &self.config.store_code {
                let attrs = json!({"availability": availability, "quantity": item.quantity.max(0).to_string()});
                local.insert(
                    store.clone(),
                    Delayed::now(self.local_json(&key, store, attrs)),
                );
            }
            let mut e = Entry {
                key: key.clone(),
                offer_id: item.sku.clone(),
                input: Some(input),
                version_number: None,
                processed: Delayed::now(processed),
                local,
                updates: VecDeque::new(),
            };
            if let Some(l) = self.listing_of(&mut e, now) {
                out.push(l);
            }
            lock(&self.state).products.insert(key, e);
        }
        out
    }

    fn buy(&self, _lines: &[(String, i64)]) -> Result<Value, SimError> {
        Err(SimError::BadRequest("no orders on this channel".into()))
    }

    fn cancel(&self, _order_id: &str) -> Result<(), SimError> {
        Err(SimError::BadRequest("no orders on this channel".into()))
    }

    fn refund(&self, _order_id: &str, _restock: bool) -> Result<(), SimError> {
        Err(SimError::BadRequest("no orders on this channel".into()))
    }

    /// Merchant Center's product editor: the availability (and a local
    /// inventory's quantity) change at once, without going through the API.
    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        let now = Instant::now();
        let availability = if quantity > 0 {
            "IN_STOCK"
        } else {
            "OUT_OF_STOCK"
        };
        let mut st = lock(&self.state);
        let entry = st
            .products
            .values_mut()
            .find(|e| e.offer_id == sku && e.input.is_some())
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        entry.processed.settle(now);
        for product in [entry.input.as_mut(), entry.processed.visible.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(attrs) = product
                .get_mut("productAttributes")
                .and_then(Value::as_object_mut)
            {
                attrs.insert("availability".into(), json!(availability));
            }
        }
        for local in entry.local.values_mut() {
            local.settle(now);
            if let Some(attrs) = local
                .visible
                .as_mut()
                .and_then(|v| v.get_mut("localInventoryAttributes"))
                .and_then(Value::as_object_mut)
            {
                attrs.insert("availability".into(), json!(availability));
                attrs.insert("quantity".into(), json!(quantity.to_string()));
            }
        }
        let entry = st
            .products
            .values_mut()
            .find(|e| e.offer_id == sku && e.input.is_some())
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))?;
        self.listing_of(entry, now)
            .ok_or_else(|| SimError::UnknownSku(sku.to_string()))
    }
}
