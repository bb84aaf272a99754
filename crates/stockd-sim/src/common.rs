//! The framework every channel simulator is built on.
//!
//! A simulator is a [`SimBackend`] (the channel's state and rules) plus a shared [`SimCore`]:
//! request counters, fault injection, a deterministic-enough random source and the webhook
//! sender. The `/_sim` operator endpoints and the in-process [`RunningSim`] handle are written
//! once here against the trait, so bol.com, Amazon and Google can be added by implementing
//! [`SimBackend`] and mounting their API routes next to [`sim_router`].

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

/// One listing as the channel shows it, with the ids stockd stores for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimListing {
    pub sku: String,
    /// Exactly the object stockd stores as the listing's channel ids.
    pub external: Map<String, Value>,
    pub quantity: i64,
    /// `in_stock`, `out_of_stock` or `backorder`.
    pub availability: String,
}

/// Counters of one simulator, as served by `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Channel API requests received (operator endpoints excluded).
    pub requests: u64,
    /// Requests refused because the channel's real limit could not pay for them.
    pub rate_limit_violations: u64,
    /// Requests, items and webhook copies affected by injected faults.
    pub injected_faults: u64,
    /// Stock updates written through the channel API (one per item changed).
    pub updates_applied: u64,
    /// Webhook delivery attempts the receiver accepted.
    pub webhooks_sent: u64,
    /// Webhook delivery attempts that failed (error, timeout or non-success status).
    pub webhooks_failed: u64,
}

/// Injected faults, the body of `POST /_sim/faults`. Durations count from the moment the
/// faults are set; setting faults replaces the previous set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// For this many seconds every API request is answered with the channel's throttle response.
    pub throttle_storm_secs: f64,
    /// `Retry-After` value sent with injected throttle responses.
    pub retry_after_secs: Option<f64>,
    /// Probability (0..1) that an API request fails with a 5xx.
    pub error_5xx_rate: f64,
    /// Added latency for every API request.
    pub latency_ms: u64,
    /// For this many seconds every API request gets 503.
    pub outage_secs: f64,
    /// Probability (0..1) that a webhook is delivered twice.
    pub duplicate_webhook_rate: f64,
    /// Deliver webhooks with random delays so that they can arrive out of order.
    pub reorder_webhooks: bool,
    /// These SKUs fail with the channel's permanent per-item error.
    pub reject_skus: Vec<String>,
    /// Probability (0..1) that a webhook is never delivered (as if every
    /// retry had failed).
    pub lose_webhook_rate: f64,
    /// Each webhook leaves after a random delay of up to this many
    /// milliseconds (so deliveries also overtake each other).
    pub delay_webhooks_ms: u64,
}

/// Errors of the in-process API and the `/_sim` endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The channel does not show enough sellable stock for the order.
    NotAvailable,
    UnknownSku(String),
    UnknownOrder(String),
    /// The order cannot make this transition (e.g. already cancelled).
    InvalidState(String),
    BadRequest(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::NotAvailable => write!(f, "not_available"),
            SimError::UnknownSku(s) => write!(f, "unknown sku {s}"),
            SimError::UnknownOrder(s) => write!(f, "unknown order {s}"),
            SimError::InvalidState(s) => write!(f, "invalid state: {s}"),
            SimError::BadRequest(s) => write!(f, "bad request: {s}"),
        }
    }
}

impl std::error::Error for SimError {}

impl SimError {
    pub(crate) fn to_response(&self) -> Response {
        let (status, code) = match self {
            SimError::NotAvailable => (StatusCode::CONFLICT, "not_available"),
            SimError::UnknownSku(_) => (StatusCode::NOT_FOUND, "unknown_sku"),
            SimError::UnknownOrder(_) => (StatusCode::NOT_FOUND, "unknown_order"),
            SimError::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
            SimError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response()
    }
}

/// A listing to create through `POST /_sim/listings`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewListing {
    pub sku: String,
    pub quantity: i64,
    /// WooCommerce: create a variation of a variable product instead of a simple product.
    #[serde(default)]
    pub variation: bool,
}

/// What a channel simulator implements; everything else is shared.
pub(crate) trait SimBackend: Send + Sync + 'static {
    fn core(&self) -> &Arc<SimCore>;
    fn listings(&self) -> Vec<SimListing>;
    fn add_listings(&self, items: &[NewListing]) -> Vec<SimListing>;
    /// A customer buys; returns at least `{"order_id": "..."}`.
    fn buy(&self, lines: &[(String, i64)]) -> Result<Value, SimError>;
    fn cancel(&self, order_id: &str) -> Result<(), SimError>;
    fn refund(&self, order_id: &str, restock: bool) -> Result<(), SimError>;
    /// A merchant edits the listing's quantity in the channel's back office (behind stockd's
    /// back: no webhook, nothing stockd sent); returns the listing as it now shows.
    fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError>;
}

/// One webhook POST as a simulator sends it, for an in-process sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Receives webhooks in process instead of over HTTP; answers the HTTP
/// status the receiver gave (2xx: delivered).
pub type WebhookSink = Arc<
    dyn Fn(WebhookDelivery) -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>>
        + Send
        + Sync,
>;

/// A simulated shop's wall clock (a simulated day runs on one), used for
/// the timestamps it writes.
#[derive(Clone)]
pub struct SimClock(pub Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>);

impl SimClock {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimClock")
    }
}

/// How a simulator started in process behaves.
#[derive(Clone, Default)]
pub struct SimOptions {
    /// Every random draw (faults, ids, delays) from this seed; `None`: from
    /// the system clock.
    pub seed: Option<u64>,
    /// Where webhooks go; `None`: HTTP to the configured URL.
    pub webhook_sink: Option<WebhookSink>,
}

/// A small xorshift64* generator: fault rates and ids need no cryptographic quality.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Rng {
        static SALT: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let s = SALT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        Rng((t ^ s) | 1)
    }
    /// A repeatable sequence.
    pub(crate) fn from_seed(seed: u64) -> Rng {
        // Spread small seeds over the state: xorshift starts slowly from few bits.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub rate_limit_violations: AtomicU64,
    pub injected_faults: AtomicU64,
    pub updates_applied: AtomicU64,
    pub webhooks_sent: AtomicU64,
    pub webhooks_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

struct FaultState {
    faults: Faults,
    since: Instant,
}

/// An injected failure the channel must answer in its own shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Injected {
    Outage,
    Throttle { retry_after: Option<f64> },
    ServerError,
}

/// One webhook POST, already signed.
pub(crate) struct Delivery {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a channel treats a failed delivery.
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    /// Delay before each retry; empty means no retries.
    pub delays: Vec<Duration>,
    /// Highest status that counts as success (Shopify 299, WooCommerce 302).
    pub max_success_status: u16,
    pub timeout: Duration,
}

/// Called once per delivery with the outcome of its last attempt.
pub(crate) type DoneHook = Box<dyn FnOnce(bool) + Send>;

struct Queued {
    delivery: Delivery,
    policy: RetryPolicy,
    done: Option<DoneHook>,
}

/// State shared by all channel simulators.
pub(crate) struct SimCore {
    pub counters: Counters,
    faults: Mutex<FaultState>,
    rng: Mutex<Rng>,
    http: reqwest::Client,
    sink: Option<WebhookSink>,
    queue: mpsc::UnboundedSender<Queued>,
    shutdown: watch::Sender<bool>,
}

/// Lock a mutex, recovering the data if a previous holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimCore {
    /// Must be called inside a tokio runtime: it spawns the webhook worker.
    pub(crate) fn new() -> Arc<SimCore> {
        SimCore::with_options(SimOptions::default())
    }

    /// [`SimCore::new`] with a seed and an in-process webhook sink.
    pub(crate) fn with_options(options: SimOptions) -> Arc<SimCore> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let core = Arc::new(SimCore {
            counters: Counters::default(),
            faults: Mutex::new(FaultState {
                faults: Faults::default(),
                since: Instant::now(),
            }),
            rng: Mutex::new(options.seed.map_or_else(Rng::seeded, Rng::from_seed)),
            http,
            sink: options.webhook_sink,
            queue: tx,
            shutdown,
        });
        tokio::spawn(webhook_worker(
            Arc::downgrade(&core),
            rx,
            core.shutdown.subscribe(),
        ));
        core
    }

    pub(crate) fn stats(&self) -> SimStats {
        let c = &self.counters;
        SimStats {
            requests: c.requests.load(Ordering::Relaxed),
            rate_limit_violations: c.rate_limit_violations.load(Ordering::Relaxed),
            injected_faults: c.injected_faults.load(Ordering::Relaxed),
            updates_applied: c.updates_applied.load(Ordering::Relaxed),
            webhooks_sent: c.webhooks_sent.load(Ordering::Relaxed),
            webhooks_failed: c.webhooks_failed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = FaultState {
            faults,
            since: Instant::now(),
        };
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).faults.clone()
    }

    pub(crate) fn rand_unit(&self) -> f64 {
        lock(&self.rng).unit()
    }

    pub(crate) fn uuid(&self) -> String {
        lock(&self.rng).uuid()
    }

    pub(crate) fn rand_u64(&self) -> u64 {
        lock(&self.rng).next_u64()
    }

    /// Whether `sku` is in the injected `reject_skus`; counts the injected fault.
    pub(crate) fn rejects_sku(&self, sku: &str) -> bool {
        let hit = lock(&self.faults)
            .faults
            .reject_skus
            .iter()
            .any(|s| s == sku);
        if hit {
            Counters::add(&self.counters.injected_faults, 1);
        }
        hit
    }

    /// Count an API request, apply injected latency and decide on an injected failure.
    pub(crate) async fn intercept(&self) -> Option<Injected> {
        Counters::add(&self.counters.requests, 1);
        let (latency, outage, storm, rate, retry_after) = {
            let st = lock(&self.faults);
            let elapsed = st.since.elapsed().as_secs_f64();
            (
                st.faults.latency_ms,
                elapsed < st.faults.outage_secs,
                elapsed < st.faults.throttle_storm_secs,
                st.faults.error_5xx_rate,
                st.faults.retry_after_secs,
            )
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let injected = if outage {
            Some(Injected::Outage)
        } else if storm {
            Some(Injected::Throttle { retry_after })
        } else if rate > 0.0 && self.rand_unit() < rate {
            Some(Injected::ServerError)
        } else {
            None
        };
        if injected.is_some() {
            Counters::add(&self.counters.injected_faults, 1);
        }
        injected
    }

    /// Queue a webhook. Deliveries leave in order unless `reorder_webhooks` is set; an
    /// injected duplicate is a second, identical delivery.
    pub(crate) fn send_webhook(
        &self,
        delivery: Delivery,
        policy: RetryPolicy,
        done: Option<DoneHook>,
    ) {
        let faults = self.faults();
        if faults.lose_webhook_rate > 0.0 && self.rand_unit() < faults.lose_webhook_rate {
            Counters::add(&self.counters.injected_faults, 1);
            Counters::add(&self.counters.webhooks_failed, 1);
            // Lost on the way: the channel does not learn of it (no retry,
            // and its subscription stays).
            drop(done);
            return;
        }
        let delay_ms = if faults.delay_webhooks_ms > 0 {
            faults.delay_webhooks_ms
        } else if faults.reorder_webhooks {
            300
        } else {
            0
        };
        if faults.duplicate_webhook_rate > 0.0 && self.rand_unit() < faults.duplicate_webhook_rate {
            Counters::add(&self.counters.injected_faults, 1);
            let copy = Delivery {
                url: delivery.url.clone(),
                headers: delivery.headers.clone(),
                body: delivery.body.clone(),
            };
            self.enqueue(copy, policy.clone(), None, delay_ms);
        }
        self.enqueue(delivery, policy, done, delay_ms);
    }

    fn enqueue(
        &self,
        delivery: Delivery,
        policy: RetryPolicy,
        done: Option<DoneHook>,
        delay_max_ms: u64,
    ) {
        let q = Queued {
            delivery,
            policy,
            done,
        };
        if delay_max_ms > 0 {
            // A random head start lets later events overtake earlier ones.
            let delay = Duration::from_millis(self.rand_u64() % delay_max_ms);
            let tx = self.queue.clone();
            let mut stop = self.shutdown.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => { let _ = tx.send(q); }
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        } else {
            let _ = self.queue.send(q);
        }
    }

    async fn attempt(&self, d: &Delivery, policy: &RetryPolicy) -> bool {
        if let Some(sink) = &self.sink {
            let status = sink(WebhookDelivery {
                url: d.url.clone(),
                headers: d.headers.clone(),
                body: d.body.clone(),
            })
            .await;
            let ok = (200..=policy.max_success_status).contains(&status);
            let counter = if ok {
                &self.counters.webhooks_sent
            } else {
                &self.counters.webhooks_failed
            };
            Counters::add(counter, 1);
            return ok;
        }
        let mut req = self
            .http
            .post(&d.url)
            .timeout(policy.timeout)
            .body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let ok = match req.send().await {
            Ok(resp) => {
                let s = resp.status().as_u16();
                (200..=policy.max_success_status).contains(&s)
            }
            Err(_) => false,
        };
        if ok {
            Counters::add(&self.counters.webhooks_sent, 1);
        } else {
            Counters::add(&self.counters.webhooks_failed, 1);
        }
        ok
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// First attempts go out one at a time, in queue order; retries run on their own timers so a
/// failing receiver does not hold back later events.
async fn webhook_worker(
    core: std::sync::Weak<SimCore>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let q = tokio::select! {
            q = rx.recv() => match q { Some(q) => q, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(core) = core.upgrade() else { return };
        let ok = tokio::select! {
            ok = core.attempt(&q.delivery, &q.policy) => ok,
            _ = stop.wait_for(|s| *s) => return,
        };
        if ok || q.policy.delays.is_empty() {
            if let Some(done) = q.done {
                done(ok);
            }
            continue;
        }
        let mut stop2 = core.shutdown_signal();
        let core2 = Arc::clone(&core);
        tokio::spawn(async move {
            let Queued {
                delivery,
                policy,
                done,
            } = q;
            let mut ok = false;
            for delay in &policy.delays {
                tokio::select! {
                    _ = tokio::time::sleep(*delay) => {}
                    _ = stop2.wait_for(|s| *s) => return,
                }
                ok = core2.attempt(&delivery, &policy).await;
                if ok {
                    break;
                }
            }
            if let Some(done) = done {
                done(ok);
            }
        });
    }
}

/// base64(HMAC-SHA256(body, secret)): Shopify's `X-Shopify-Hmac-Sha256` and WooCommerce's
/// `X-WC-Webhook-Signature`.
pub fn hmac_sha256_base64(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<sha2::Sha256> as Mac>::new_from_slice(&[]).expect("empty key"));
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// SHA-1, needed only for OAuth 1.0a `HMAC-SHA1` (WooCommerce over plain HTTP).
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104) over the hand-written SHA-1.
pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(data);
    let ih = sha1(&inner);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&ih);
    sha1(&outer)
}

/// Raw HMAC-SHA256 bytes.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    match <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Constant-time comparison of two byte strings.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `json_encode` as PHP does it by default (what WordPress's `wp_json_encode` produces): `/`
/// is escaped as `\/` and non-ASCII as `\uXXXX` (the non-ASCII detail is UNCONFIRMED).
pub fn php_json_encode(v: &Value) -> String {
    let mut out = String::new();
    php_write(v, &mut out);
    out
}

fn php_write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => php_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                php_write(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                php_str(k, out);
                out.push(':');
                php_write(x, out);
            }
            out.push('}');
        }
    }
}

fn php_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Handle on a running simulator.
pub struct RunningSim {
    /// `http://127.0.0.1:PORT`, with the real port when started on port 0.
    pub base_url: String,
    pub(crate) backend: Arc<dyn SimBackend>,
    /// The same backend as its concrete type, for a channel's own in-process helpers (bol's
    /// process outcomes, Google's counters); `None` when started through plain [`serve`].
    channel: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) server: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    pub fn listings(&self) -> Vec<SimListing> {
        self.backend.listings()
    }

    /// Create listings (sku, quantity); on WooCommerce they are simple products.
    pub fn add_listings(&self, items: &[(String, i64)]) -> Vec<SimListing> {
        let items: Vec<NewListing> = items
            .iter()
            .map(|(sku, quantity)| NewListing {
                sku: sku.clone(),
                quantity: *quantity,
                variation: false,
            })
            .collect();
        self.backend.add_listings(&items)
    }

    /// Create listings with full control (WooCommerce variations).
    pub fn add_listings_detailed(&self, items: &[NewListing]) -> Vec<SimListing> {
        self.backend.add_listings(items)
    }

    /// A simulated customer buys; the order webhook is queued. Returns the channel's order id.
    pub async fn buy(&self, lines: &[(String, i64)]) -> Result<String, SimError> {
        let v = self.backend.buy(lines)?;
        Ok(order_id_string(&v))
    }

    pub async fn cancel_order(&self, order_id: &str) -> Result<(), SimError> {
        self.backend.cancel(order_id)
    }

    /// Refund the whole order, optionally restocking it.
    pub async fn refund_order(&self, order_id: &str, restock: bool) -> Result<(), SimError> {
        self.backend.refund(order_id, restock)
    }

    /// A merchant edits a listing's quantity in the back office (stockd is not told).
    pub fn edit_quantity(&self, sku: &str, quantity: i64) -> Result<SimListing, SimError> {
        self.backend.edit_quantity(sku, quantity)
    }

    /// The channel state behind this handle, if the simulator is a `B`.
    pub(crate) fn channel<B: SimBackend>(&self) -> Option<Arc<B>> {
        self.channel.clone()?.downcast::<B>().ok()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.backend.core().set_faults(faults);
    }

    pub fn stats(&self) -> SimStats {
        self.backend.core().stats()
    }

    /// Stop the server and every pending webhook delivery.
    pub async fn shutdown(self) {
        self.backend.core().stop();
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

fn order_id_string(v: &Value) -> String {
    match v.get("order_id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Bind, serve `router` until shutdown, and return the handle.
pub(crate) fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    backend: Arc<dyn SimBackend>,
) -> std::io::Result<RunningSim> {
    let addr = listener.local_addr()?;
    let mut stop = backend.core().shutdown_signal();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(RunningSim {
        base_url: format!("http://{addr}"),
        backend,
        channel: None,
        server,
    })
}

/// A simulator started in process: its API is called as a service (no
/// socket), and `sim` drives it as a [`RunningSim`] does.
pub struct InMemorySim {
    pub sim: RunningSim,
    router: Router,
}

impl InMemorySim {
    /// Answers one request to the channel API (or the `/_sim` endpoints).
    /// The request's URI may be absolute; its `Host` header names the
    /// simulator as the channel's base URL does.
    pub async fn handle(
        &self,
        request: axum::http::Request<axum::body::Body>,
    ) -> axum::http::Response<axum::body::Body> {
        use tower::ServiceExt as _;
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// Serves `router` in process: the handle's `base_url` is `base_url`, a
/// name no socket answers to.
pub(crate) fn serve_in_memory<B: SimBackend>(
    router: Router,
    base_url: String,
    sim: Arc<B>,
) -> InMemorySim {
    let mut stop = sim.core().shutdown_signal();
    let server = tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    InMemorySim {
        sim: RunningSim {
            base_url,
            backend: sim.clone(),
            channel: Some(sim),
            server,
        },
        router,
    }
}

/// [`serve`], keeping the concrete backend in the handle so that the channel's module can
/// reach its own state from a [`RunningSim`] (see [`RunningSim::channel`]).
pub(crate) fn serve_channel<B: SimBackend>(
    router: Router,
    listener: tokio::net::TcpListener,
    sim: Arc<B>,
) -> std::io::Result<RunningSim> {
    let mut running = serve(router, listener, sim.clone())?;
    running.channel = Some(sim);
    Ok(running)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OrderBody {
    Lines { lines: Vec<OrderLine> },
    One(OrderLine),
}

#[derive(Deserialize)]
struct OrderLine {
    sku: String,
    qty: i64,
}

#[derive(Deserialize, Default)]
struct RefundBody {
    #[serde(default)]
    restock: Option<bool>,
}

type Backend = Arc<dyn SimBackend>;

/// The operator endpoints, identical for every channel.
pub(crate) fn sim_router(backend: Backend) -> Router {
    Router::new()
        .route("/_sim/listings", get(get_listings).post(post_listings))
        .route("/_sim/listings/{sku}/quantity", post(post_edit_quantity))
        .route("/_sim/orders", post(post_order))
        .route("/_sim/orders/{id}/cancel", post(post_cancel))
        .route("/_sim/orders/{id}/refund", post(post_refund))
        .route(
            "/_sim/faults",
            get(get_faults).post(post_faults).delete(delete_faults),
        )
        .route("/_sim/stats", get(get_stats))
        .with_state(backend)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SimError> {
    serde_json::from_slice(body).map_err(|e| SimError::BadRequest(e.to_string()))
}

async fn get_listings(State(b): State<Backend>) -> Response {
    Json(b.listings()).into_response()
}

async fn post_listings(State(b): State<Backend>, body: axum::body::Bytes) -> Response {
    match parse_json::<Vec<NewListing>>(&body) {
        Ok(items) => (StatusCode::CREATED, Json(b.add_listings(&items))).into_response(),
        Err(e) => e.to_response(),
    }
}

/// The body of `POST /_sim/listings/{sku}/quantity`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditQuantity {
    quantity: i64,
}

async fn post_edit_quantity(
    State(b): State<Backend>,
    Path(sku): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let edit: EditQuantity = match parse_json(&body) {
        Ok(e) => e,
        Err(e) => return e.to_response(),
    };
    if edit.quantity < 0 {
        return SimError::BadRequest("quantity must be >= 0".into()).to_response();
    }
    match b.edit_quantity(&sku, edit.quantity) {
        Ok(listing) => Json(listing).into_response(),
        Err(e) => e.to_response(),
    }
}

async fn post_order(State(b): State<Backend>, body: axum::body::Bytes) -> Response {
    let lines = match parse_json::<OrderBody>(&body) {
        Ok(OrderBody::Lines { lines }) => lines,
        Ok(OrderBody::One(l)) => vec![l],
        Err(e) => return e.to_response(),
    };
    if lines.is_empty() || lines.iter().any(|l| l.qty <= 0) {
        return SimError::BadRequest("lines must be non-empty with qty > 0".into()).to_response();
    }
    let lines: Vec<(String, i64)> = lines.into_iter().map(|l| (l.sku, l.qty)).collect();
    match b.buy(&lines) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.to_response(),
    }
}

async fn post_cancel(State(b): State<Backend>, Path(id): Path<String>) -> Response {
    match b.cancel(&id) {
        Ok(()) => Json(json!({"order_id": id, "status": "cancelled"})).into_response(),
        Err(e) => e.to_response(),
    }
}

async fn post_refund(
    State(b): State<Backend>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let rb: RefundBody = if body.is_empty() {
        RefundBody::default()
    } else {
        match parse_json(&body) {
            Ok(r) => r,
            Err(e) => return e.to_response(),
        }
    };
    match b.refund(&id, rb.restock.unwrap_or(true)) {
        Ok(()) => Json(json!({"order_id": id, "status": "refunded"})).into_response(),
        Err(e) => e.to_response(),
    }
}

async fn get_faults(State(b): State<Backend>) -> Response {
    Json(b.core().faults()).into_response()
}

async fn post_faults(State(b): State<Backend>, body: axum::body::Bytes) -> Response {
    match parse_json::<Faults>(&body) {
        Ok(f) => {
            b.core().set_faults(f.clone());
            Json(f).into_response()
        }
        Err(e) => e.to_response(),
    }
}

async fn delete_faults(State(b): State<Backend>) -> Response {
    b.core().set_faults(Faults::default());
    StatusCode::NO_CONTENT.into_response()
}

async fn get_stats(State(b): State<Backend>) -> Response {
    Json(b.core().stats()).into_response()
}

/// How a decoder reads `+`: a space in `application/x-www-form-urlencoded` data (query
/// strings and form bodies, <https://url.spec.whatwg.org/#application/x-www-form-urlencoded>),
/// itself everywhere else (path segments, OAuth header values, RFC 3986 section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plus {
    Space,
    Literal,
}

/// Decode `%XX` escapes (either case). A `%` not followed by two hex digits stays as it is,
/// as PHP's `urldecode` and browsers leave it; invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str, plus: Plus) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus == Plus::Space => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode every byte but RFC 3986's unreserved `A-Za-z0-9-_.~` (upper-case hex): PHP's
/// `rawurlencode`, which OAuth 1.0a signature base strings require (RFC 5849 section 3.6).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `name=value&...` pairs of a query string or form body, decoded, in order, repeats kept.
pub(crate) fn parse_form_urlencoded(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                percent_decode(k, Plus::Space),
                percent_decode(v, Plus::Space),
            ),
            None => (percent_decode(p, Plus::Space), String::new()),
        })
        .collect()
}

/// Seconds formatted the way `Retry-After` carries them ("2" or "2.5").
pub(crate) fn retry_after_value(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}", secs as u64)
    } else {
        format!("{secs:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = vec![b'a'; 1_000];
        assert_eq!(
            hex(&sha1(&long)),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    #[test]
    fn hmac_sha1_rfc2202() {
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // Case 6: a key longer than the block size is hashed first.
        let key = [0xaa_u8; 80];
        assert_eq!(
            hex(&hmac_sha1(
                &key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn rng_and_uuid() {
        let mut r = Rng::seeded();
        let u = r.uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!((0.0..1.0).contains(&r.unit()));
    }

    #[test]
    fn faults_reject_unknown_fields() {
        assert!(serde_json::from_str::<Faults>(r#"{"bogus": 1}"#).is_err());
        let f: Faults =
            serde_json::from_str(r#"{"throttle_storm_secs": 5, "reject_skus": ["A"]}"#).unwrap();
        assert_eq!(f.throttle_storm_secs, 5.0);
        assert_eq!(f.reject_skus, vec!["A".to_string()]);
    }

    #[test]
    fn percent_decode_reads_plus_as_the_caller_asks() {
        assert_eq!(percent_decode("a+b%20c", Plus::Space), "a b c");
        assert_eq!(percent_decode("a+b%20c", Plus::Literal), "a+b c");
        assert_eq!(percent_decode("%2B", Plus::Space), "+");
    }

    #[test]
    fn percent_decode_keeps_malformed_escapes() {
        assert_eq!(percent_decode("%zz%4", Plus::Literal), "%zz%4");
        assert_eq!(percent_decode("100%", Plus::Literal), "100%");
        // A sign is not a hex digit, although `from_str_radix` would accept "+1".
        assert_eq!(percent_decode("%+1", Plus::Literal), "%+1");
        assert_eq!(percent_decode("%c3%A9", Plus::Literal), "\u{e9}");
        assert_eq!(percent_decode("%ff", Plus::Literal), "\u{fffd}");
    }

    #[test]
    fn percent_encode_matches_php_rawurlencode() {
        assert_eq!(percent_encode("a b+c/~"), "a%20b%2Bc%2F~");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(percent_encode("\u{e9}"), "%C3%A9");
        let raw = "k=v&x y+\u{e9}%";
        assert_eq!(percent_decode(&percent_encode(raw), Plus::Space), raw);
    }

    #[test]
    fn form_pairs_decode_in_order_and_keep_repeats() {
        assert_eq!(
            parse_form_urlencoded("a=1&&b=x+y&a=2&flag"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y".to_string()),
                ("a".to_string(), "2".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }
}
