//! Google Merchant Center connector (Merchant API v1).
//!
//! Protocol details follow Google's public documentation (cited per point)
//! and the Merchant API v1 protos and service configs copied in `specs/gmc/`.
//! The Content API for Shopping v2.1 is sunset
//! (<https://developers.google.com/shopping-content/guides/deprecation-and-sunset>)
//! and is never called; v1beta is shut down
//! (<https://developers.google.com/merchant/api>).
//!
//! - Auth (<https://developers.google.com/identity/protocols/oauth2/service-account>;
//!   the scope is in `specs/gmc/products_v1/merchantapi_v1.yaml`): a
//!   service-account JWT (RS256, signed with `ring`) is exchanged at the
//!   token endpoint (`grant_type=…jwt-bearer`) for a bearer access token,
//!   cached until shortly before it expires. A 401 from the API drops the
//!   cached token and the request is sent once more with a fresh one.
//! - Google shows availability, not a count ([`Connector::carries_quantity`]
//!   is `false`). A push is one `productInputs` PATCH per listing
//!   (`specs/gmc/products_v1/productinputs.proto`) with the required
//!   `dataSource` and an `updateMask` limited to
//!   `productAttributes.availability,productAttributes.availabilityDate`.
//!   `availabilityDate` is sent with `BACKORDER` when the item has an ETA;
//!   otherwise it is masked without a value, which deletes a stale date
//!   (`productinputs.proto`: "Attributes specified in the update mask without
//!   a value specified in the body will be deleted").
//! - With [`Config::local_inventory`] and a `store_code` in the listing's
//!   external ids, the store's quantity is written with
//!   `localInventories:insert` (`specs/gmc/inventories_v1/localinventory.proto`).
//!   That call replaces the whole store entry, so attributes stockd does not
//!   manage (price, pickup method) are not kept there: per-store prices must
//!   come from elsewhere.
//! - A PATCH answer is Google's synchronous acknowledgement that the product
//!   input is stored, and is reported as `Applied`. Processing into the
//!   served product takes minutes (`specs/gmc/products_v1/products.proto`:
//!   "it may take several minutes"); that is observed by
//!   [`Connector::read_levels`] (reconciliation), not awaited inside `push`.
//! - Google allows about two updates per product a day
//!   (<https://developers.google.com/merchant/api/guides/quotas-limits>); the
//!   dispatcher's change budget enforces that, this connector sends what it
//!   is given, paced by a token bucket. Quota errors are `RateLimited`: per
//!   minute with `Retry-After` or 60 s, per day until the daily reset. While
//!   a method is blocked, further calls to it fail at once with the remaining
//!   wait instead of sleeping.
//! - Bulk read ([`Connector::read_all`]): Products v1 `products.list`
//!   paged with `nextPageToken` (see the `list` module,
//!   <https://developers.google.com/merchant/api/reference/rest/products_v1/accounts.products/list>).
//! - No orders (no Merchant API sub-API delivers them,
//!   <https://developers.google.com/merchant/api/design>) and no webhooks:
//!   [`Connector::webhook`] refuses everything with `BadSignature`, so
//!   nothing can be injected through it.

mod list;

pub use list::{product_key, LIST_PAGE_SIZE};

use crate::encoding::percent_encode;
use crate::ratelimit::Limiter;
use crate::{
    Availability, BulkProgress, BulkRead, ChannelError, ChannelLevel, Connector, ErrorClass,
    External, HttpRequest, HttpResponse, ItemOutcome, LevelQuery, PushItem, Transport,
    WebhookAction, WebhookError,
};
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Production API host (`specs/gmc/products_v1/merchantapi_v1.yaml`).
pub const DEFAULT_API_URL: &str = "https://merchantapi.googleapis.com";
/// Google's OAuth 2.0 token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The Merchant API scope (`authentication.rules` in
/// `specs/gmc/products_v1/merchantapi_v1.yaml`).
pub const SCOPE: &str = "https://www.googleapis.com/auth/content";
/// Items one `push` takes; each is its own request (the Merchant API v1 has
/// no batch endpoint for product inputs).
pub const MAX_BATCH: usize = 50;
/// The `updateMask` of an availability push
/// (`specs/gmc/products_v1/productinputs.proto`).
pub const UPDATE_MASK: &str = "productAttributes.availability,productAttributes.availabilityDate";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime asked for in the JWT's `exp`: Google's maximum is one hour.
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Assumed when the token answer has no `expires_in` (UNCONFIRMED,
/// <https://developers.google.com/identity/protocols/oauth2/service-account>).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// A cached token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(300);
/// Wait after a per-minute quota error without `Retry-After`.
const MINUTE_QUOTA_WAIT: Duration = Duration::from_secs(60);
const BODY_EXCERPT: usize = 2048;

/// Google's product update policy: "You can only update your products up to
/// twice per day"
/// (<https://developers.google.com/merchant/api/guides/quotas-limits>).
pub const PRODUCT_UPDATES_PER_DAY: u32 = 2;

/// Connection settings for one Merchant Center account.
#[derive(Clone)]
pub struct Config {
    /// Merchant API base URL, without a trailing slash.
    pub api_url: String,
    /// OAuth token endpoint; also the JWT's `aud` (as Google's client
    /// libraries use the key file's `token_uri`).
    pub token_url: String,
    /// Merchant Center account id (`123`; `accounts/123` is accepted too).
    pub account_id: String,
    /// The API data source that owns the products:
    /// `accounts/{account}/dataSources/{id}` (a bare id is accepted).
    pub data_source: String,
    /// The service account's `client_email`.
    pub service_account_email: String,
    /// The service account's `private_key`: PKCS#8 PEM (PKCS#1
    /// `RSA PRIVATE KEY` is accepted too).
    pub private_key_pem: String,
    /// Also write the per-store quantity when a listing has a `store_code`.
    pub local_inventory: bool,
    /// Authenticate with a self-signed JWT (claims `iss` = `sub` = the service
    /// account, `scope`) sent as the bearer token, without the token endpoint,
    /// as Google's client libraries do by default for service accounts
    /// (<https://developers.google.com/identity/protocols/oauth2/service-account#jwt-auth>).
    pub self_signed_jwt: bool,
    /// `(burst, per second)` for all API calls. Google adjusts per-method
    /// quotas per account and publishes none
    /// (<https://developers.google.com/merchant/api/guides/quotas-limits>):
    /// this default is a conservative choice (UNCONFIRMED), corrected by
    /// quota errors.
    pub rate_limit: (f64, f64),
    /// The change budget when the rules set none: Google asks for product
    /// updates "up to twice per day"
    /// (<https://developers.google.com/merchant/api/guides/quotas-limits>).
    /// `None` leaves the listings unbudgeted.
    pub pushes_per_day: Option<u32>,
    /// From how many listings reconciliation pages through `products.list`
    /// (1000 a page) rather than reading each product.
    pub bulk_read_from: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_url: DEFAULT_API_URL.to_owned(),
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            account_id: String::new(),
            data_source: String::new(),
            service_account_email: String::new(),
            private_key_pem: String::new(),
            local_inventory: false,
            self_signed_jwt: false,
            rate_limit: (10.0, 2.0),
            pushes_per_day: Some(PRODUCT_UPDATES_PER_DAY),
            bulk_read_from: 50,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_url", &self.api_url)
            .field("token_url", &self.token_url)
            .field("account_id", &self.account_id)
            .field("data_source", &self.data_source)
            .field("service_account_email", &self.service_account_email)
            .field("private_key_pem", &"<redacted>")
            .field("local_inventory", &self.local_inventory)
            .field("self_signed_jwt", &self.self_signed_jwt)
            .field("rate_limit", &self.rate_limit)
            .field("pushes_per_day", &self.pushes_per_day)
            .field("bulk_read_from", &self.bulk_read_from)
            .finish()
    }
}

/// The methods whose quotas are counted separately ("Quotas are
/// per-method", <https://developers.google.com/merchant/api/guides/quotas-limits>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    UpdateInput = 0,
    GetProduct = 1,
    InsertLocal = 2,
    ListProducts = 3,
}

#[derive(Debug, Clone)]
struct CachedToken {
    access_token: String,
    renew_at: Instant,
}

/// The Google Merchant Center connector.
pub struct Gmc {
    config: Config,
    transport: Arc<dyn Transport>,
    /// Parsed once; a bad key is reported on first use as `Permanent`.
    key: Result<Arc<ring::signature::RsaKeyPair>, String>,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    limiter: Limiter,
    /// Per method: no call before this instant (after a quota error), with
    /// the error to report meanwhile.
    blocked: Mutex<[Option<(Instant, ChannelError)>; 4]>,
}

impl std::fmt::Debug for Gmc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gmc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A listing's ids on Google (the agreed external object
/// `{"offer_id", "content_language", "feed_label", "store_code"?}`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    offer_id: String,
    content_language: String,
    feed_label: String,
    store_code: Option<String>,
}

impl Target {
    fn segment(&self) -> String {
        product_segment(&self.content_language, &self.feed_label, &self.offer_id)
    }
}

fn external_str(external: &External, key: &str) -> Option<String> {
    match external.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_external(external: &External) -> Result<Target, ChannelError> {
    let missing = |what: &str| {
        ChannelError::new(
            ErrorClass::Permanent,
            "missing_external_id",
            format!("listing has no Google {what}"),
        )
    };
    Ok(Target {
        offer_id: external_str(external, "offer_id").ok_or_else(|| missing("offer_id"))?,
        content_language: external_str(external, "content_language")
            .ok_or_else(|| missing("content_language"))?,
        feed_label: external_str(external, "feed_label").ok_or_else(|| missing("feed_label"))?,
        store_code: external_str(external, "store_code"),
    })
}

/// Google strips leading/trailing whitespace of an offer id and collapses
/// runs of whitespace (productinputs.proto `offer_id`); the product's name
/// is built from the normalised id.
pub fn normalize_offer_id(offer_id: &str) -> String {
    offer_id.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `{productinput}` / `{product}` path segment for
/// `contentLanguage~feedLabel~offerId`
/// (`specs/gmc/products_v1/productinputs.proto`). The plain form is used when
/// every part consists of URL-safe characters (`A–Z a–z 0–9 - _ .`); any
/// other character (`/`, `%`, `~`, spaces, non-ASCII, …) selects the unpadded
/// base64url form, which is mandatory for `/ % ~` and which the server tells
/// apart by the absence of `~`.
pub fn product_segment(content_language: &str, feed_label: &str, offer_id: &str) -> String {
    let offer_id = normalize_offer_id(offer_id);
    let plain = format!("{content_language}~{feed_label}~{offer_id}");
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if safe(content_language) && safe(feed_label) && safe(&offer_id) {
        plain
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain.as_bytes())
    }
}

/// The DER bytes of a PEM private key and whether it is PKCS#8. Accepts the
/// `\n` escapes of a service-account JSON left unescaped.
pub fn pem_to_der(pem: &str) -> Result<(Vec<u8>, bool), String> {
    let pem = pem.replace("\\n", "\n");
    let (label, rest) = if let Some(i) = pem.find("-----BEGIN PRIVATE KEY-----") {
        (
            "PRIVATE KEY",
            &pem[i + "-----BEGIN PRIVATE KEY-----".len()..],
        )
    } else if let Some(i) = pem.find("-----BEGIN RSA PRIVATE KEY-----") {
        (
            "RSA PRIVATE KEY",
            &pem[i + "-----BEGIN RSA PRIVATE KEY-----".len()..],
        )
    } else {
        return Err("no PEM private key block".to_owned());
    };
    let end = format!("-----END {label}-----");
    let body = rest
        .find(&end)
        .map(|j| &rest[..j])
        .ok_or_else(|| format!("PEM block has no `{end}`"))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("PEM body is not base64: {e}"))?;
    Ok((der, label == "PRIVATE KEY"))
}

fn parse_key(pem: &str) -> Result<Arc<ring::signature::RsaKeyPair>, String> {
    let (der, pkcs8) = pem_to_der(pem)?;
    let key = if pkcs8 {
        ring::signature::RsaKeyPair::from_pkcs8(&der)
    } else {
        ring::signature::RsaKeyPair::from_der(&der)
    };
    key.map(Arc::new)
        .map_err(|e| format!("private key rejected: {e}"))
}

/// The signed JWT assertion (RS256) for Google's service-account flow:
/// claims `iss`, `scope`, `aud`, `iat`, `exp` (`iat` + 1 h).
pub fn jwt_assertion(
    key: &ring::signature::RsaKeyPair,
    issuer: &str,
    audience: &str,
    issued_at: i64,
) -> Result<String, String> {
    sign_jwt(
        key,
        &json!({
            "iss": issuer,
            "scope": SCOPE,
            "aud": audience,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME_SECS,
        }),
    )
}

/// A self-signed JWT access token (RS256): claims `iss` = `sub` = the service
/// account, `scope`, `iat`, `exp` (`iat` + 1 h); Google accepts it as the
/// bearer token itself, with no call to the token endpoint.
pub fn jwt_access_token(
    key: &ring::signature::RsaKeyPair,
    issuer: &str,
    issued_at: i64,
) -> Result<String, String> {
    sign_jwt(
        key,
        &json!({
            "iss": issuer,
            "sub": issuer,
            "scope": SCOPE,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME_SECS,
        }),
    )
}

fn sign_jwt(key: &ring::signature::RsaKeyPair, claims: &Value) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "RSA signing failed".to_owned())?;
    Ok(format!("{signing_input}.{}", b64.encode(signature)))
}

/// How long from `now` until Google's daily quotas reset. Taken as midnight
/// Pacific Standard Time (08:00 UTC), as Google's API quotas reset at
/// midnight Pacific (UNCONFIRMED for the Merchant API,
/// <https://developers.google.com/merchant/api/guides/quotas-limits>);
/// during daylight saving time this waits one hour longer than needed,
/// never less.
pub fn daily_quota_reset_after(now: DateTime<Utc>) -> Duration {
    let reset_hour = 8;
    let today = now
        .date_naive()
        .and_hms_opt(reset_hour, 0, 0)
        .map(|t| t.and_utc());
    let next = match today {
        Some(t) if t > now => t,
        Some(t) => t + ChronoDuration::days(1),
        None => now + ChronoDuration::days(1),
    };
    (next - now).to_std().unwrap_or(Duration::from_secs(1))
}

/// Reads an int64 that proto3 JSON writes as a string (a number is accepted
/// too, <https://protobuf.dev/programming-guides/proto3/#json>).
pub fn int64_value(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}

/// The products_common.proto `Availability` literal of an availability.
pub fn availability_literal(availability: Availability) -> &'static str {
    match availability {
        Availability::InStock => "IN_STOCK",
        Availability::OutOfStock => "OUT_OF_STOCK",
        Availability::Backorder => "BACKORDER",
    }
}

fn availability_from_literal(literal: &str) -> Option<Availability> {
    match literal {
        "IN_STOCK" | "LIMITED_AVAILABILITY" => Some(Availability::InStock),
        "OUT_OF_STOCK" => Some(Availability::OutOfStock),
        // Both are sold ahead of stock.
        "BACKORDER" | "PREORDER" => Some(Availability::Backorder),
        _ => None,
    }
}

/// RFC 3339 timestamp of the ETA day (proto `Timestamp` in JSON).
fn availability_date(eta: NaiveDate) -> String {
    format!("{}T00:00:00Z", eta.format("%Y-%m-%d"))
}

/// The `ProductInput` body of an availability PATCH.
fn product_input_body(target: &Target, item: &PushItem) -> Value {
    let mut attributes = Map::new();
    attributes.insert(
        "availability".into(),
        Value::from(availability_literal(item.availability)),
    );
    if item.availability == Availability::Backorder {
        if let Some(eta) = item.eta {
            attributes.insert(
                "availabilityDate".into(),
                Value::from(availability_date(eta)),
            );
        }
    }
    json!({
        "offerId": normalize_offer_id(&target.offer_id),
        "contentLanguage": target.content_language,
        "feedLabel": target.feed_label,
        "productAttributes": attributes,
    })
}

/// The `LocalInventory` body for one store
/// (`specs/gmc/inventories_v1/localinventory.proto`): quantity ≥ 0 as an int64
/// string; a store cannot sell a backorder, so only `IN_STOCK` with units.
fn local_inventory_body(store_code: &str, item: &PushItem) -> Value {
    let quantity = item.quantity.max(0);
    let availability = if item.availability == Availability::InStock && quantity > 0 {
        "IN_STOCK"
    } else {
        "OUT_OF_STOCK"
    };
    json!({
        "storeCode": store_code,
        "localInventoryAttributes": {
            "availability": availability,
            "quantity": quantity.to_string(),
        },
    })
}

fn response_json(response: &HttpResponse) -> Option<Value> {
    serde_json::from_slice(&response.body).ok()
}

/// Classifies a non-2xx answer from the Google JSON error format
/// `{"error":{"code","message","status","details"}}`
/// (<https://cloud.google.com/apis/design/errors>; the Merchant API's
/// specifics are UNCONFIRMED, so the quota reasons are found anywhere in the
/// body).
pub fn classify_error(response: &HttpResponse, now: DateTime<Utc>) -> ChannelError {
    let text = String::from_utf8_lossy(&response.body);
    let parsed: Option<Value> = response_json(response);
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let google_status = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            // OAuth endpoint errors: {"error": "...", "error_description": "..."}.
            parsed
                .as_ref()
                .and_then(|v| v.get("error_description"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    let status = response.status;
    let (class, code, retry_after) = if text.contains("quota/daily_limit_exceeded") {
        (
            ErrorClass::RateLimited,
            "quota/daily_limit_exceeded".to_owned(),
            Some(
                response
                    .retry_after()
                    .unwrap_or_else(|| daily_quota_reset_after(now)),
            ),
        )
    } else if text.contains("quota/request_rate_too_high")
        || status == 429
        || google_status.as_deref() == Some("RESOURCE_EXHAUSTED")
    {
        // 429 / RESOURCE_EXHAUSTED without a reason: treated as the per-minute
        // limit (mapping UNCONFIRMED; the reasons are named in
        // <https://developers.google.com/merchant/api/guides/quotas-limits>).
        let code = if text.contains("quota/request_rate_too_high") {
            "quota/request_rate_too_high".to_owned()
        } else {
            google_status
                .clone()
                .unwrap_or_else(|| "RESOURCE_EXHAUSTED".to_owned())
        };
        (
            ErrorClass::RateLimited,
            code,
            Some(response.retry_after().unwrap_or(MINUTE_QUOTA_WAIT)),
        )
    } else {
        let class = match (status, google_status.as_deref()) {
            (_, Some("UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "ABORTED")) => {
                ErrorClass::Retryable
            }
            (408 | 409, _) => ErrorClass::Retryable,
            (s, _) if s >= 500 => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        };
        let code = google_status.clone().unwrap_or_else(|| {
            match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                409 => "ABORTED",
                410 => "GONE",
                s if s >= 500 => "UNAVAILABLE",
                _ => "http_error",
            }
            .to_owned()
        });
        let retry_after = if class == ErrorClass::Retryable {
            response.retry_after()
        } else {
            None
        };
        (class, code, retry_after)
    };
    ChannelError {
        class,
        code,
        message,
        status: Some(status),
        body: Some(response.body_excerpt(BODY_EXCERPT)),
        retry_after,
        current: None,
    }
}

fn invalid_response(response: &HttpResponse, what: &str) -> ChannelError {
    ChannelError {
        class: ErrorClass::Retryable,
        code: "invalid_response".to_owned(),
        message: what.to_owned(),
        status: Some(response.status),
        body: Some(response.body_excerpt(BODY_EXCERPT)),
        retry_after: None,
        current: None,
    }
}

fn level_of(product: &Value) -> ChannelLevel {
    let attributes = product.get("productAttributes");
    ChannelLevel {
        // Google keeps a count only as `sellOnGoogleQuantity`
        // (`specs/gmc/products_v1/products_common.proto`).
        quantity: int64_value(attributes.and_then(|a| a.get("sellOnGoogleQuantity"))),
        availability: attributes
            .and_then(|a| a.get("availability"))
            .and_then(Value::as_str)
            .and_then(availability_from_literal),
    }
}

impl Gmc {
    pub fn new(config: Config, transport: Arc<dyn Transport>) -> Gmc {
        let (burst, per_sec) = config.rate_limit;
        let limiter = if burst > 0.0 && per_sec > 0.0 {
            Limiter::new(burst, per_sec)
        } else {
            Limiter::new(1e9, 1e9)
        };
        let key = parse_key(&config.private_key_pem);
        Gmc {
            config,
            transport,
            key,
            token: tokio::sync::Mutex::new(None),
            limiter,
            blocked: Mutex::new([None, None, None, None]),
        }
    }

    fn api(&self) -> &str {
        self.config.api_url.trim_end_matches('/')
    }

    fn account(&self) -> &str {
        let id = self.config.account_id.trim();
        id.strip_prefix("accounts/").unwrap_or(id)
    }

    fn data_source(&self) -> String {
        let ds = self.config.data_source.trim();
        if ds.starts_with("accounts/") {
            ds.to_owned()
        } else {
            format!("accounts/{}/dataSources/{ds}", self.account())
        }
    }

    fn patch_url(&self, target: &Target) -> String {
        format!(
            "{}/products/v1/accounts/{}/productInputs/{}?updateMask={}&dataSource={}",
            self.api(),
            percent_encode(self.account()),
            target.segment(),
            percent_encode(UPDATE_MASK),
            percent_encode(&self.data_source()),
        )
    }

    fn product_url(&self, target: &Target) -> String {
        format!(
            "{}/products/v1/accounts/{}/products/{}",
            self.api(),
            percent_encode(self.account()),
            target.segment(),
        )
    }

    fn local_inventory_url(&self, target: &Target) -> String {
        format!(
            "{}/inventories/v1/accounts/{}/products/{}/localInventories:insert",
            self.api(),
            percent_encode(self.account()),
            target.segment(),
        )
    }

    /// The remaining block of a method, as the error to report.
    fn blocked_error(&self, method: Method) -> Option<ChannelError> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut blocked[method as usize];
        let (until, error) = slot.as_ref()?;
        let now = Instant::now();
        if *until <= now {
            *slot = None;
            return None;
        }
        let mut error = error.clone();
        error.retry_after = Some(*until - now);
        Some(error)
    }

    fn block(&self, method: Method, error: &ChannelError) {
        let Some(after) = error.retry_after else {
            return;
        };
        let until = Instant::now() + after;
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut blocked[method as usize];
        if slot.as_ref().is_none_or(|(u, _)| *u < until) {
            *slot = Some((until, error.clone()));
        }
    }

    /// A valid access token: the cached one, or a new one from the token
    /// endpoint.
    async fn access_token(&self, force_new: bool) -> Result<String, ChannelError> {
        let mut cached = self.token.lock().await;
        if !force_new {
            if let Some(token) = cached.as_ref() {
                if Instant::now() < token.renew_at {
                    return Ok(token.access_token.clone());
                }
            }
        }
        *cached = None;
        let token = self.fetch_token().await?;
        let access_token = token.access_token.clone();
        *cached = Some(token);
        Ok(access_token)
    }

    async fn fetch_token(&self) -> Result<CachedToken, ChannelError> {
        let key = self.key.as_ref().map_err(|e| {
            ChannelError::new(ErrorClass::Permanent, "invalid_private_key", e.clone())
        })?;
        if self.config.self_signed_jwt {
            let lifetime = Duration::from_secs(ASSERTION_LIFETIME_SECS as u64);
            let access_token = jwt_access_token(
                key,
                &self.config.service_account_email,
                Utc::now().timestamp(),
            )
            .map_err(|e| ChannelError::new(ErrorClass::Permanent, "jwt_signing", e))?;
            return Ok(CachedToken {
                access_token,
                renew_at: Instant::now() + (lifetime - TOKEN_RENEW_MARGIN),
            });
        }
        let assertion = jwt_assertion(
            key,
            &self.config.service_account_email,
            &self.config.token_url,
            Utc::now().timestamp(),
        )
        .map_err(|e| ChannelError::new(ErrorClass::Permanent, "jwt_signing", e))?;
        let body = format!(
            "grant_type={}&assertion={}",
            percent_encode(GRANT_TYPE),
            percent_encode(&assertion)
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let requested_at = Instant::now();
        let response = self
            .transport
            .send(HttpRequest {
                method: http::Method::POST,
                url: self.config.token_url.clone(),
                headers,
                body: body.into_bytes(),
            })
            .await?;
        if !(200..300).contains(&response.status) {
            let mut error = classify_error(&response, Utc::now());
            // invalid_grant / invalid_client / unauthorized_client: the
            // credentials are wrong; retrying cannot help.
            if (400..500).contains(&response.status) && error.class != ErrorClass::RateLimited {
                error.class = ErrorClass::Permanent;
                if let Some(code) = response_json(&response)
                    .as_ref()
                    .and_then(|v| v.get("error"))
                    .and_then(Value::as_str)
                {
                    error.code = code.to_owned();
                }
            }
            return Err(error);
        }
        let parsed = response_json(&response)
            .ok_or_else(|| invalid_response(&response, "token answer is not JSON"))?;
        let access_token = parsed
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid_response(&response, "token answer has no access_token"))?
            .to_owned();
        let lifetime = int64_value(parsed.get("expires_in"))
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Short lifetimes renew at half-life instead.
        let margin = TOKEN_RENEW_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            access_token,
            renew_at: requested_at + (lifetime - margin),
        })
    }

    /// Paces, authenticates and sends one API call; a 401 renews the token
    /// and sends once more. `Ok` for any answer.
    async fn call(
        &self,
        method: http::Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<HttpResponse, ChannelError> {
        let mut force_new = false;
        for attempt in 0..2 {
            let token = self.access_token(force_new).await?;
            self.limiter.acquire(1.0).await;
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            );
            if body.is_some() {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            let auth = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ChannelError::new(
                    ErrorClass::Retryable,
                    "invalid_token",
                    "access token is not a valid header value",
                )
            })?;
            headers.insert(http::header::AUTHORIZATION, auth);
            let response = self
                .transport
                .send(HttpRequest {
                    method: method.clone(),
                    url: url.clone(),
                    headers,
                    body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
                })
                .await?;
            if response.status == 401 && attempt == 0 {
                force_new = true;
                continue;
            }
            return Ok(response);
        }
        Err(ChannelError::new(
            ErrorClass::Retryable,
            "not_sent",
            "request was not sent",
        ))
    }

    /// One API call of `method`, failing at once while the method is blocked
    /// by a quota error, and blocking it on a new one. `Ok` only for 2xx.
    async fn call_method(
        &self,
        method: Method,
        http_method: http::Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<HttpResponse, ChannelError> {
        if let Some(error) = self.blocked_error(method) {
            return Err(error);
        }
        let response = self.call(http_method, url, body).await?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        let error = classify_error(&response, Utc::now());
        if error.class == ErrorClass::RateLimited {
            self.block(method, &error);
        }
        Err(error)
    }

    async fn push_one(&self, target: &Target, item: &PushItem) -> Result<i64, ChannelError> {
        let body = product_input_body(target, item);
        let response = self
            .call_method(
                Method::UpdateInput,
                http::Method::PATCH,
                self.patch_url(target),
                Some(&body),
            )
            .await?;
        // The answer is the stored ProductInput: it must carry what was sent
        // when it carries an availability at all.
        let stored = response_json(&response);
        let answered = stored
            .as_ref()
            .and_then(|v| v.get("productAttributes"))
            .and_then(|a| a.get("availability"))
            .and_then(Value::as_str);
        if let Some(answered) = answered {
            if answered != availability_literal(item.availability) {
                return Err(invalid_response(
                    &response,
                    &format!(
                        "Google stored availability {answered}, not {}",
                        availability_literal(item.availability)
                    ),
                ));
            }
        }
        let mut quantity = item.quantity;
        if let (true, Some(store)) = (self.config.local_inventory, &target.store_code) {
            let body = local_inventory_body(store, item);
            let response = self
                .call_method(
                    Method::InsertLocal,
                    http::Method::POST,
                    self.local_inventory_url(target),
                    Some(&body),
                )
                .await
                .map_err(|mut e| {
                    // Local inventories hang under the processed product
                    // (`parent` in `specs/gmc/inventories_v1/localinventory.proto`),
                    // which appears minutes after an insert.
                    if e.status == Some(404) {
                        e.class = ErrorClass::Retryable;
                        e.code = "not_processed".to_owned();
                    }
                    e
                })?;
            if let Some(q) = response_json(&response).as_ref().and_then(|v| {
                int64_value(
                    v.get("localInventoryAttributes")
                        .and_then(|a| a.get("quantity")),
                )
            }) {
                quantity = q;
            }
        }
        Ok(quantity)
    }

    async fn read_one(&self, target: &Target) -> Result<ChannelLevel, ChannelError> {
        let response = self
            .call_method(
                Method::GetProduct,
                http::Method::GET,
                self.product_url(target),
                None,
            )
            .await
            .map_err(|mut e| {
                // "it may take several minutes before the processed product
                // can be retrieved" (`specs/gmc/products_v1/products.proto`):
                // a 404 is not final.
                if e.status == Some(404) {
                    e.class = ErrorClass::Retryable;
                    e.code = "not_processed".to_owned();
                }
                e
            })?;
        let product = response_json(&response)
            .ok_or_else(|| invalid_response(&response, "product answer is not JSON"))?;
        Ok(level_of(&product))
    }
}

/// Errors after which the rest of a call would fail the same way: no
/// answer, quota, or credentials refused after a token renewal.
fn halts(error: &ChannelError) -> bool {
    error.status.is_none()
        || error.class == ErrorClass::RateLimited
        || error.status == Some(401)
        || (error.status == Some(403) && error.code == "PERMISSION_DENIED")
}

#[async_trait]
impl Connector for Gmc {
    fn kind(&self) -> &'static str {
        "gmc"
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn carries_quantity(&self) -> bool {
        false
    }

    fn default_pushes_per_day(&self) -> Option<u32> {
        self.config.pushes_per_day
    }

    fn bulk_read_from(&self) -> Option<usize> {
        Some(self.config.bulk_read_from)
    }

    /// `contentLanguage~feedLabel~offerId`, as [`product_key`] builds it from
    /// a listed product.
    fn listing_key(&self, external: &External) -> Option<String> {
        parse_external(external).ok().map(|target| target.key())
    }

    async fn read_all(&self, progress: BulkProgress<'_>) -> Result<BulkRead, ChannelError> {
        self.access_token(false).await?;
        self.list_all(progress).await
    }

    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        let targets: Vec<Result<Target, ChannelError>> =
            items.iter().map(|i| parse_external(&i.external)).collect();
        if targets.iter().any(Result::is_ok) {
            // No token, nothing sent: the whole call failed.
            self.access_token(false).await?;
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let mut halted: Option<ChannelError> = None;
        for (item, target) in items.iter().zip(targets) {
            let outcome = match (target, &halted) {
                (Err(error), _) => ItemOutcome::Failed(error),
                (Ok(_), Some(error)) => ItemOutcome::Failed(error.clone()),
                (Ok(target), None) => match self.push_one(&target, item).await {
                    Ok(quantity) => ItemOutcome::Applied { quantity },
                    Err(error) => {
                        if halts(&error) {
                            halted = Some(error.clone());
                        }
                        ItemOutcome::Failed(error)
                    }
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError> {
        let targets: Vec<Result<Target, ChannelError>> = listings
            .iter()
            .map(|l| parse_external(&l.external))
            .collect();
        if targets.iter().any(Result::is_ok) {
            self.access_token(false).await?;
        }
        let mut results = Vec::with_capacity(listings.len());
        let mut halted: Option<ChannelError> = None;
        for target in targets {
            let result = match (target, &halted) {
                (Err(error), _) => Err(error),
                (Ok(_), Some(error)) => Err(error.clone()),
                (Ok(target), None) => {
                    let result = self.read_one(&target).await;
                    if let Err(error) = &result {
                        if halts(error) {
                            halted = Some(error.clone());
                        }
                    }
                    result
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    /// Google sends no order or inventory webhooks to stockd (no Merchant API
    /// sub-API delivers orders,
    /// <https://developers.google.com/merchant/api/design>), so any request on
    /// this channel's webhook endpoint is refused unapplied.
    fn webhook(
        &self,
        _headers: &http::HeaderMap,
        _body: &[u8],
    ) -> Result<WebhookAction, WebhookError> {
        Err(WebhookError::BadSignature)
    }
}
