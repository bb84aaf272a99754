//! Channel connectors. Each channel is one module with the same inner shape:
//! it pushes batches of absolute quantities, reads the channel's current
//! levels back (for compare-and-set and reconciliation), turns the channel's
//! order notifications into [`OrderChange`]s, and classifies every failure as
//! retryable, rate-limited, stale or permanent. Each connector paces itself
//! with the channel's own limit signals; the dispatcher in `stockd` owns
//! retries, backoff, the change budget and the dead-letter queue.
//!
//! Connectors are written from the channels' documentation and official
//! schemas only; they share no code with the simulators (`stockd-sim`).

pub mod amazon;
pub mod bol;
pub mod encoding;
pub mod gmc;
pub mod gzip;
mod poll;
pub mod ratelimit;
pub mod shopify;
pub mod woocommerce;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use stockd_core::availability::Availability;

/// A listing's channel-specific ids as stored with the listing
/// (`{"inventory_item_id": …, "location_id": …}`, `{"product_id": …}`, …).
pub type External = serde_json::Map<String, serde_json::Value>;

/// One absolute update for one listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushItem {
    /// stockd's SKU of the listing (results are matched by it).
    pub sku: String,
    pub external: External,
    /// Units the channel may sell (≥ 0).
    pub quantity: i64,
    pub availability: Availability,
    /// Backorder date, when `availability` is `Backorder`.
    pub eta: Option<NaiveDate>,
    /// What stockd believes the channel holds now (its own count, which the
    /// channel lowers when it sells). `None` when unknown: the connector then
    /// sets without compare-and-set where the API allows it, or reads first.
    pub believed: Option<i64>,
    /// Stable for this listing × desired generation: a retry of the same
    /// update carries the same key (channel idempotency keys).
    pub idempotency_key: String,
    /// Why the update is sent, for the channel's audit trail
    /// (e.g. `stockd://ledger/42`).
    pub reference: String,
}

/// The channel's answer for one item of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    /// The channel accepted it; `quantity` is what it now holds when it says
    /// so (otherwise the pushed value).
    /// (Asynchronous APIs report this only once the channel confirmed.)
    Applied {
        quantity: i64,
    },
    Failed(ChannelError),
}

/// What [`Connector::submit`] did with one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Decided at once (a synchronous path, or refused before it was taken).
    Done(ItemOutcome),
    /// The channel took the update and acknowledges it later: `reference`
    /// names what to ask it about (a bol process status id, an Amazon
    /// feed id with the message id), for [`Connector::track`].
    Accepted { reference: String },
}

/// An update the channel took and acknowledges later, as the tracker asks
/// about it (possibly after a restart: everything it needs is here).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedItem {
    /// From [`Submitted::Accepted`].
    pub reference: String,
    /// The update as it was sent.
    pub item: PushItem,
}

/// How the dispatcher should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network failure, timeout, 5xx: retry with backoff.
    Retryable,
    /// The channel asked us to slow down (429, THROTTLED, quota): retry after
    /// `retry_after` (or backoff), never counted as a failed attempt towards
    /// the dead-letter queue.
    RateLimited,
    /// A compare-and-set failed: the channel's count is not what we believed.
    /// `current` in the error carries the channel's count when known.
    Stale,
    /// Retrying cannot help (bad credentials, unknown item, invalid value).
    Permanent,
}

/// A classified channel failure, with what the channel said.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class:?} {code}: {message}")]
pub struct ChannelError {
    pub class: ErrorClass,
    /// Stable machine-readable code (the channel's own code where it has one).
    pub code: String,
    pub message: String,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The channel's response body (truncated), for the dead-letter queue.
    pub body: Option<String>,
    /// Not before this long from now.
    pub retry_after: Option<Duration>,
    /// For `Stale`: the channel's current count, when the answer carried it.
    pub current: Option<i64>,
}

impl ChannelError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        ChannelError {
            class,
            code: code.into(),
            message: message.into(),
            status: None,
            body: None,
            retry_after: None,
            current: None,
        }
    }
}

/// What the channel shows for one listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelLevel {
    /// The channel's sellable count, when it keeps one.
    pub quantity: Option<i64>,
    pub availability: Option<Availability>,
}

/// One listing as a channel's bulk read shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownListing {
    /// The channel's own key of the listing, the same string
    /// [`Connector::listing_key`] derives from a stored listing's `external`,
    /// so the two can be matched.
    pub key: String,
    /// The SKU the channel shows (seller SKU, offer reference, offer id),
    /// for reporting listings stockd does not know.
    pub channel_sku: Option<String>,
    pub level: ChannelLevel,
}

/// Everything a bulk read saw. The channel's export is a snapshot taken
/// some time after `started_at`: a listing acknowledged after that moment
/// may show its earlier state and is not drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkRead {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub listings: Vec<ShownListing>,
    /// Requests the read sent to the channel (job start, polls, pages,
    /// downloads).
    pub channel_requests: u64,
}

/// Progress of a bulk read, for the run's progress report.
pub type BulkProgress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// A listing whose level is asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelQuery {
    pub sku: String,
    pub external: External,
}

/// What happened to an order on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderChangeKind {
    /// Placed (or moved to a status that holds stock): reserve the lines.
    Placed,
    /// Cancelled / failed / refunded before shipping: release the lines
    /// (`lines` empty = the whole order).
    Cancelled,
    /// Units came back restocked after a refund: the channel raised its own
    /// count by `qty` per line.
    Restocked,
    /// Refunded without restock: what is still reserved of each line will
    /// not ship and is released; shipped units stay with the customer. The
    /// channel's own count does not move.
    Refunded,
}

/// One line of an order as the channel names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLineRef {
    /// The channel's line id (stable across notifications of one order).
    pub line_id: String,
    /// The channel's ids for the item, as key/value pairs matching the keys
    /// of a listing's `external` (e.g. `("variant_id", "gid://…")`,
    /// `("sku", "TEE-1")`). The first pair that matches a listing wins.
    pub keys: Vec<(String, String)>,
    pub qty: i64,
}

/// An order notification, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderChange {
    /// Deduplication key: the same change delivered twice has the same key.
    pub dedup_key: String,
    pub order_id: String,
    pub kind: OrderChangeKind,
    pub lines: Vec<OrderLineRef>,
}

/// Wall clock for order-poll windows (injectable for tests and simulated
/// days).
pub type Clock = std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

/// One poll's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPoll {
    pub changes: Vec<OrderChange>,
    /// Where the next poll continues.
    pub cursor: Option<String>,
    /// When to poll next (the channel's rate limit for the endpoint).
    pub next_poll_after: Duration,
}

/// What an inbound webhook asks of stockd, once verified.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookAction {
    /// A delivery test or subscription ping: answer 200, apply nothing.
    Ping,
    /// A topic stockd does not act on: answer 200, apply nothing.
    Ignored {
        topic: String,
    },
    Order(OrderChange),
    /// The notification names changes whose details live elsewhere on the
    /// channel (WooCommerce: an order's refunds are ids only); stockd asks
    /// the connector to read them ([`Connector::follow_up`]).
    FollowUp(FollowUp),
}

/// What a connector needs to read the rest of a notification: the order and
/// the notification itself as the channel sent it (connector-specific).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub order_id: String,
    pub notification: serde_json::Value,
}

/// Why an inbound webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong signature: 401, nothing applied.
    #[error("webhook signature missing or invalid")]
    BadSignature,
    /// Signed correctly but not understood: 400 with the reason.
    #[error("webhook payload invalid: {0}")]
    BadPayload(String),
}

/// The contract every channel implements.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The channel kind (`shopify`, `woocommerce`, …).
    fn kind(&self) -> &'static str;

    /// Most items one `push` call takes.
    fn max_batch(&self) -> usize;

    /// Most items of a push that takes the channel's fast path and answers
    /// within about a second at the channel's rate (protective updates go
    /// this way: Amazon patches rather than a feed).
    fn fast_batch(&self) -> usize {
        self.max_batch()
    }

    /// Pushes the dispatcher may have under way at once in each lane (fast:
    /// protective updates; bulk: the rest). Channels that acknowledge later
    /// are pipelined.
    fn pushes_in_flight(&self) -> usize {
        1
    }

    /// Pushes updates that are not protective, on the channel's bulk path
    /// where it has one (Amazon: a listings feed, so the patch rate stays
    /// for protective updates). The same contract as `push`.
    async fn push_bulk(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError> {
        self.push(items).await
    }

    /// Whether protective updates the fast path cannot take at once may go
    /// the bulk path (not where it is much slower: Amazon's feeds).
    fn bulk_takes_protective(&self) -> bool {
        true
    }

    /// Up to how many items a bulk push (`push_bulk`, `submit` in bulk) still
    /// goes the fast path and spends the rate protective updates need
    /// (Amazon: patches up to its feed threshold per marketplace); 0 when
    /// the bulk path never does. The dispatcher starts such pushes only
    /// while no protective update waits, one at a time and fast-path sized.
    fn bulk_on_fast_path_up_to(&self) -> usize {
        0
    }

    /// The change budget (pushes per listing per day) when the rules set
    /// none.
    fn default_pushes_per_day(&self) -> Option<u32> {
        None
    }

    /// Sends absolute values. `Err` when the whole call failed (nothing
    /// applied); otherwise one outcome per item, in the order given. Waits
    /// for the channel's rate limit before sending.
    async fn push(&self, items: &[PushItem]) -> Result<Vec<ItemOutcome>, ChannelError>;

    /// Whether the channel acknowledges updates later and this connector
    /// hands back what to follow ([`Connector::submit`]) instead of waiting
    /// for it, so the acknowledgement can be persisted and followed by a
    /// tracker ([`Connector::track`]) while pushes go on.
    fn tracks_acknowledgements(&self) -> bool {
        false
    }

    /// How often the tracker asks about accepted updates.
    fn track_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// How long after submission an accepted update that is still pending
    /// is given up and sent again (values are absolute: harmless).
    fn track_timeout(&self) -> Duration {
        Duration::from_secs(15 * 60)
    }

    /// Sends as `push` (`bulk`: as `push_bulk`) but does not wait for an
    /// acknowledgement the channel gives later: such items come back
    /// [`Submitted::Accepted`]. `Err` when the whole call failed.
    async fn submit(&self, items: &[PushItem], bulk: bool) -> Result<Vec<Submitted>, ChannelError> {
        let outcomes = if bulk {
            self.push_bulk(items).await?
        } else {
            self.push(items).await?
        };
        Ok(outcomes.into_iter().map(Submitted::Done).collect())
    }

    /// Asks the channel about accepted updates (through its bulk read where
    /// it has one): one answer per item, in the order given, `None` while
    /// the channel has not decided. `Err` when nothing could be asked (the
    /// items stay pending).
    async fn track(&self, items: &[TrackedItem]) -> Result<Vec<Option<ItemOutcome>>, ChannelError> {
        Ok(vec![None; items.len()])
    }

    /// Reads what the channel shows for each listing, in the order given.
    async fn read_levels(
        &self,
        listings: &[LevelQuery],
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, ChannelError>;

    /// From how many listings a reconciliation reads the whole channel
    /// through [`Connector::read_all`] rather than listing by listing with
    /// `read_levels`. `None`: the channel has no bulk read.
    fn bulk_read_from(&self) -> Option<usize> {
        None
    }

    /// The key that matches a stored listing (its `external`) to a
    /// [`ShownListing`] of `read_all`.
    fn listing_key(&self, external: &External) -> Option<String> {
        let _ = external;
        None
    }

    /// Reads every listing the channel shows through its bulk path (a
    /// Shopify bulk operation, bol.com's offers export, Amazon's listings
    /// report, WooCommerce's collection pages, Google's products list),
    /// pacing itself with the channel's limits; `progress` is told the
    /// listings read so far.
    async fn read_all(&self, progress: BulkProgress<'_>) -> Result<BulkRead, ChannelError> {
        let _ = progress;
        Err(ChannelError::new(
            ErrorClass::Permanent,
            "no_bulk_read",
            format!("{} has no bulk read", self.kind()),
        ))
    }

    /// Whether the channel shows a quantity. `false` (Google: availability
    /// only): updates that change only the quantity are not sent.
    fn carries_quantity(&self) -> bool {
        true
    }

    /// Whether the channel's own count moves by exactly an order's lines
    /// when it takes, cancels or restocks one, whenever that happens. When
    /// not (bol.com subtracts only the orders placed after the last stock
    /// update it applied), stockd forgets what it believes the channel shows
    /// on each order change and sends the whole figure again.
    fn count_follows_orders(&self) -> bool {
        true
    }

    /// Whether stockd must poll this channel for orders (no push).
    fn polls_orders(&self) -> bool {
        false
    }

    /// Order changes since `cursor` (`None`: the first poll after start —
    /// the connector looks back far enough not to miss recent orders;
    /// re-reading an order is harmless, changes are deduplicated by their
    /// `dedup_key`). Paces itself with the channel's limits.
    async fn poll_orders(&self, cursor: Option<&str>) -> Result<OrderPoll, ChannelError> {
        Ok(poll::idle(cursor))
    }

    /// Reads what a [`WebhookAction::FollowUp`] names and returns the order
    /// changes of the whole notification, in the order they apply. Changes
    /// carry dedup keys, so reading the same notification again is harmless.
    async fn follow_up(&self, follow_up: &FollowUp) -> Result<Vec<OrderChange>, ChannelError> {
        let _ = follow_up;
        Ok(Vec::new())
    }

    /// Verifies and interprets an inbound webhook. `headers` are lower-cased
    /// names with their values; `body` is the exact bytes received.
    fn webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookAction, WebhookError>;
}

/// The outcome of an item a push did not get to (the call stopped before
/// it): retryable, so it is sent again.
pub(crate) fn not_sent() -> ItemOutcome {
    ItemOutcome::Failed(ChannelError::new(
        ErrorClass::Retryable,
        "not_sent",
        "item was not sent",
    ))
}

/// One outcome per item: what the push decided, `not_sent` where it did not
/// get to the item.
pub(crate) fn or_not_sent(outcomes: Vec<Option<ItemOutcome>>) -> Vec<ItemOutcome> {
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(not_sent))
        .collect()
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// An HTTP request as a connector builds it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: http::Method,
    pub url: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// An HTTP response as the connector sees it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text, cut to `max` bytes (for error reports).
    pub fn body_excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        if text.len() <= max {
            return text.into_owned();
        }
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }

    /// `Retry-After` in seconds (the delta form; an HTTP date is read as 1 s).
    pub fn retry_after(&self) -> Option<Duration> {
        let raw = self.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
        match raw.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => Some(Duration::from_secs_f64(secs)),
            _ => Some(Duration::from_secs(1)),
        }
    }
}

/// How requests leave. Production uses [`ReqwestTransport`]; tests plug in
/// an in-memory channel so paused time sees every request and its moment.
#[async_trait]
pub trait Transport: Send + Sync {
    /// `Err` only when no response arrived (connection refused, timeout),
    /// classified `Retryable`.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError>;
}

/// HTTP(S) over reqwest.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    pub fn new(timeout: Duration) -> Result<ReqwestTransport, ChannelError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ChannelError::new(ErrorClass::Permanent, "http_client", e.to_string()))?;
        Ok(ReqwestTransport { client })
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let response = self
            .client
            .request(request.method, &request.url)
            .headers(request.headers)
            .body(request.body)
            .send()
            .await
            .map_err(|e| {
                let code = if e.is_timeout() { "timeout" } else { "network" };
                ChannelError::new(ErrorClass::Retryable, code, e.to_string())
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| ChannelError::new(ErrorClass::Retryable, "network", e.to_string()))?
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
