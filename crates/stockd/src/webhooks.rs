//! Inbound channel webhooks: `POST /v1/webhooks/{kind}/{channel_id}`.
//! The connector verifies the signature over the exact body bytes (401 and
//! nothing applied when wrong) and turns the delivery into an order change;
//! order lines are mapped to SKUs through the channel's listings; the change
//! becomes a ledger event whose idempotency key is the connector's semantic
//! dedup key, so a duplicate delivery applies once. The delivery is answered
//! once the event is committed (persisted and applied in one step).
//!
//! Lines that map to no listing are not dropped: they are kept
//! (`UnmappedStore`) and answered `quarantined`; when a listing of the
//! channel is upserted, kept changes whose lines all map now are replayed
//! through `apply_change` and taken (`replay_unmapped`).
//!
//! Channels keep their own count and lower it when they sell; stockd's belief
//! of that count follows (the compare-and-set of the next push relies on it).

use crate::api::AppState;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use stockd_channels::{
    ChannelError, Connector, OrderChange, OrderChangeKind, OrderLineRef, WebhookAction,
    WebhookError,
};
use stockd_core::{ChannelId, Event, EventInput, EventStatus, Sku};
use stockd_store::{Store, StoreError};

/// Connected channels by id.
pub type Connectors = HashMap<ChannelId, Arc<dyn Connector>>;

/// Listing lookups by the channel's own ids, per channel; rebuilt when a
/// line names an id it does not know (listings may have been added). It
/// also carries how each channel's order changes apply: the channels whose
/// refunds with restock verify the return at once, and those whose own count
/// does not follow their orders exactly.
#[derive(Default)]
pub struct ListingIndex {
    by_channel: Mutex<HashMap<ChannelId, Arc<ExternalIndex>>>,
    restock_on_refund: BTreeSet<ChannelId>,
    /// Channels whose connector says their count does not move by exactly an
    /// order's lines (`Connector::count_follows_orders`).
    counts_apart: BTreeSet<ChannelId>,
}

/// (external id key, value) → SKU, for one channel.
type ExternalIndex = HashMap<(String, String), Sku>;

fn external_value(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ListingIndex {
    /// An empty index; refunds with restock on `restock_on_refund` channels
    /// verify their returns at once.
    pub fn new(restock_on_refund: BTreeSet<ChannelId>) -> ListingIndex {
        ListingIndex {
            by_channel: Mutex::default(),
            restock_on_refund,
            counts_apart: BTreeSet::new(),
        }
    }

    /// This index, knowing which of `connections` have counts that do not
    /// follow their orders exactly.
    pub fn with_connections(
        mut self,
        connections: &[crate::outbound::dispatch::Connection],
    ) -> ListingIndex {
        self.counts_apart = connections
            .iter()
            .filter(|c| !c.connector.count_follows_orders())
            .map(|c| c.channel.clone())
            .collect();
        self
    }

    /// How an order change moves the channel's own count, per SKU: the
    /// change's own moves, or — on a channel whose count does not follow its
    /// orders — the belief of every SKU it names forgotten, so each is sent
    /// whole again.
    fn moves(
        &self,
        channel: &ChannelId,
        change: &OrderChange,
        skus: &[Option<Sku>],
    ) -> Vec<(Sku, Option<i64>)> {
        if self.counts_apart.contains(channel) {
            let named: BTreeSet<&Sku> = skus.iter().flatten().collect();
            return named.into_iter().map(|sku| (sku.clone(), None)).collect();
        }
        channel_moves(change, skus)
    }

    async fn build(store: &dyn Store, channel: &ChannelId) -> Result<ExternalIndex, StoreError> {
        let mut index = HashMap::new();
        let mut after: Option<Sku> = None;
        loop {
            let page = store.listings(channel, after.as_ref(), 1_000).await?;
            for listing in &page {
                index.insert(
                    ("sku".to_string(), listing.sku.as_str().to_string()),
                    listing.sku.clone(),
                );
                for (key, value) in &listing.external {
                    if let Some(value) = external_value(value) {
                        index.insert((key.clone(), value), listing.sku.clone());
                    }
                }
            }
            if page.len() < 1_000 {
                return Ok(index);
            }
            after = page.last().map(|l| l.sku.clone());
        }
    }

    fn cached(&self, channel: &ChannelId) -> Option<Arc<ExternalIndex>> {
        self.by_channel.lock().ok()?.get(channel).cloned()
    }

    /// The SKU of each line (`None` where no listing matches), rebuilding
    /// the index once when something is missing.
    async fn map(
        &self,
        store: &dyn Store,
        channel: &ChannelId,
        change: &OrderChange,
    ) -> Result<Vec<Option<Sku>>, StoreError> {
        let lookup = |index: &ExternalIndex| -> Vec<Option<Sku>> {
            change
                .lines
                .iter()
                .map(|line| {
                    line.keys
                        .iter()
                        .find_map(|(k, v)| index.get(&(k.clone(), v.clone())).cloned())
                })
                .collect()
        };
        if let Some(index) = self.cached(channel) {
            let found = lookup(&index);
            if found.iter().all(Option::is_some) {
                return Ok(found);
            }
        }
        let index = Arc::new(Self::build(store, channel).await?);
        if let Ok(mut map) = self.by_channel.lock() {
            map.insert(channel.clone(), index.clone());
        }
        Ok(lookup(&index))
    }
}

/// What a webhook delivery did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    /// `applied`, `duplicate`, `quarantined` (waiting for what it names —
    /// an unknown order, or a listing for lines that map to none), `refused`
    /// or `ignored`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

fn receipt(status: &'static str) -> Json<WebhookReceipt> {
    Json(WebhookReceipt { status, seq: None })
}

/// The ledger event for an order change, or `None` when it asks nothing.
fn event_for(
    channel: &ChannelId,
    change: &OrderChange,
    skus: &[Option<Sku>],
) -> Result<Option<Event>, Vec<stockd_core::FieldError>> {
    let lines: Vec<serde_json::Value> = change
        .lines
        .iter()
        .zip(skus)
        .filter_map(|(line, sku)| {
            let sku = sku.as_ref()?;
            Some(match change.kind {
                OrderChangeKind::Placed => serde_json::json!({
                    "line_id": line.line_id, "sku": sku.as_str(), "qty": line.qty
                }),
                OrderChangeKind::Cancelled
                | OrderChangeKind::Restocked
                | OrderChangeKind::Refunded => {
                    serde_json::json!({"line_id": line.line_id, "qty": line.qty})
                }
            })
        })
        .collect();
    let mut input = serde_json::json!({
        "key": format!("{channel}:{}", change.dedup_key),
        "channel": channel.as_str(),
        "order_id": change.order_id,
        "source": "webhook",
    });
    match change.kind {
        OrderChangeKind::Placed => {
            if lines.is_empty() {
                return Ok(None);
            }
            input["type"] = "order".into();
            input["lines"] = lines.into();
        }
        OrderChangeKind::Cancelled => {
            input["type"] = "cancel".into();
            input["reason"] = "cancelled on the channel".into();
            if !change.lines.is_empty() {
                if lines.is_empty() {
                    return Ok(None);
                }
                input["lines"] = lines.into();
            }
        }
        OrderChangeKind::Restocked => {
            if lines.is_empty() {
                return Ok(None);
            }
            input["type"] = "cancel".into();
            input["reason"] = "refunded with restock on the channel".into();
            input["lines"] = lines.into();
        }
        OrderChangeKind::Refunded => {
            if lines.is_empty() {
                return Ok(None);
            }
            input["type"] = "cancel".into();
            input["reason"] = "refunded on the channel".into();
            input["lines"] = lines.into();
        }
    }
    let input: EventInput = serde_json::from_value(input).map_err(|e| {
        vec![stockd_core::FieldError {
            field: "event".into(),
            message: e.to_string(),
        }]
    })?;
    Event::validate(&input).map(Some)
}

fn whole_order_cancel(change: &OrderChange) -> bool {
    change.kind == OrderChangeKind::Cancelled && change.lines.is_empty()
}

/// A whole-order cancel names no quantities, but the channel restocks on
/// its own: stockd's belief of the channel's count of every SKU the order
/// sold there is forgotten, so the listing is pushed again even when its
/// desired state did not move (else the channel keeps showing the restocked
/// units: drift, and an oversell risk). What the channel sold is the order's
/// lines — a kit, not the components its reservation holds — read from the
/// order's reservations; the SKUs the cancel released otherwise.
async fn released_unknown(
    store: &dyn Store,
    channel: &ChannelId,
    order_id: &str,
    seq: u64,
) -> Vec<(Sku, Option<i64>)> {
    let mut skus: std::collections::BTreeSet<Sku> = std::collections::BTreeSet::new();
    if let Ok(order_id) = stockd_core::OrderId::parse(order_id.to_string()) {
        let order = stockd_core::OrderRef {
            channel: Some(channel.clone()),
            order_id,
        };
        match store.order_reservations(&order).await {
            Ok(lines) => skus.extend(
                lines
                    .into_iter()
                    .map(|line| line.kit.map_or(line.sku, |kit| kit.kit_sku)),
            ),
            Err(e) => tracing::warn!(seq, error = %e, "could not read a cancelled order's lines"),
        }
    }
    if skus.is_empty() {
        let query = stockd_store::LedgerQuery {
            sku: None,
            after_seq: seq.saturating_sub(1),
            limit: 1,
        };
        match store.ledger(&query).await {
            Ok(rows) => skus.extend(
                rows.into_iter()
                    .filter(|row| row.seq == seq)
                    .flat_map(|row| row.changes.into_iter().map(|c| c.sku)),
            ),
            Err(e) => tracing::warn!(seq, error = %e, "could not read a cancel's changes"),
        }
    }
    skus.into_iter().map(|sku| (sku, None)).collect()
}

/// How the channel's own count moved with this change, per SKU.
fn channel_moves(change: &OrderChange, skus: &[Option<Sku>]) -> Vec<(Sku, Option<i64>)> {
    if change.kind == OrderChangeKind::Cancelled && change.lines.is_empty() {
        // A whole-order cancel names no quantities: the belief stays, and a
        // stale compare on the next push corrects it from the channel.
        return Vec::new();
    }
    let sign = match change.kind {
        OrderChangeKind::Placed => -1,
        OrderChangeKind::Cancelled | OrderChangeKind::Restocked => 1,
        // Without restock the channel's count stays where it is.
        OrderChangeKind::Refunded => return Vec::new(),
    };
    change
        .lines
        .iter()
        .zip(skus)
        .filter_map(|(line, sku)| Some((sku.clone()?, Some(sign * line.qty))))
        .collect()
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{kind}/{channel_id}",
    tag = "webhooks",
    params(
        ("kind" = String, Path, description = "Channel kind: shopify, woocommerce, …"),
        ("channel_id" = String, Path, description = "The channel the delivery is for"),
    ),
    request_body(content = String, description = "The channel's webhook payload, exactly as sent"),
    responses(
        (status = 200, description = "Accepted (applied, duplicate, quarantined, refused or ignored). Lines that map to no listing of the channel are kept and answered `quarantined`; they apply when a listing makes them map (`GET /v1/channels/{id}/unmapped` lists them).", body = WebhookReceipt),
        (status = 502, description = "The notification names details the channel could not be asked for (`channel_unavailable`); nothing applied.", body = crate::error::ErrorBody),
        (status = 401, description = "Signature missing or wrong: nothing applied.", body = crate::error::ErrorBody),
        (status = 404, description = "No such connected channel.", body = crate::error::ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path((kind, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<WebhookReceipt>), ApiError> {
    let unknown = || ApiError::unknown_channel(&channel);
    let channel_id = ChannelId::parse(channel.clone()).map_err(|_| unknown())?;
    let connector = state.connectors.get(&channel_id).ok_or_else(unknown)?;
    if connector.kind() != kind {
        return Err(unknown());
    }
    let action = connector.webhook(&headers, &body).map_err(|e| match e {
        WebhookError::BadSignature => ApiError::Unauthorized,
        WebhookError::BadPayload(reason) => {
            ApiError::invalid("invalid_webhook", reason, Vec::new())
        }
    })?;
    let changes = match action {
        WebhookAction::Ping | WebhookAction::Ignored { .. } => {
            return Ok((StatusCode::OK, receipt("ignored")))
        }
        WebhookAction::Order(change) => vec![change],
        WebhookAction::FollowUp(follow_up) => connector
            .follow_up(&follow_up)
            .await
            .map_err(|e| follow_up_error(&channel_id, e))?,
    };
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in &changes {
        let outcome = apply_change(&*state.store, &state.listing_index, &channel_id, change)
            .await
            .map_err(|e| match e {
                ChangeError::Store(e) => ApiError::Storage(e),
                ChangeError::Invalid(message) => {
                    ApiError::invalid("invalid_webhook", message, Vec::new())
                }
            })?;
        outcomes.push(outcome);
    }
    let (status, seq) = combined(&outcomes);
    Ok((StatusCode::OK, Json(WebhookReceipt { status, seq })))
}

/// A channel read of a follow-up failed: 502, nothing of the notification
/// is lost for good — the channel's next notification of the order names
/// the same changes again (deduplicated by their keys).
fn follow_up_error(channel: &ChannelId, e: ChannelError) -> ApiError {
    tracing::warn!(channel = %channel, error = %e, "reading a notification's details failed");
    ApiError::Http {
        status: StatusCode::BAD_GATEWAY,
        code: "channel_unavailable",
        message: format!("the channel could not be read: {}", e.message),
    }
}

/// One status for the changes of one notification: the most telling one
/// (something applied > quarantined > refused > duplicate > ignored), with
/// the latest ledger sequence.
fn combined(outcomes: &[(&'static str, Option<u64>)]) -> (&'static str, Option<u64>) {
    const RANK: [&str; 5] = ["applied", "quarantined", "refused", "duplicate", "ignored"];
    let status = RANK
        .iter()
        .find(|s| outcomes.iter().any(|(o, _)| o == *s))
        .copied()
        .unwrap_or("ignored");
    let seq = outcomes.iter().filter_map(|(_, seq)| *seq).max();
    (status, seq)
}

/// Why an order change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change cannot become a valid event (the channel sent nonsense).
    #[error("{0}")]
    Invalid(String),
}

/// What a refund with restock does to one line of a known order: the part
/// still reserved is released (a cancel), the shipped part came back (a
/// return, per SKU and location it shipped from).
#[derive(Debug, PartialEq)]
struct RefundSplit {
    release_qty: i64,
    /// (sku, location, units) returned; for a kit line, its components.
    returned: Vec<(Sku, stockd_core::LocationId, i64)>,
}

/// Splits `qty` refunded units of one order line over what is still
/// reserved and what was shipped; units beyond both are left out (the
/// channel refunded more than stockd saw ordered).
fn split_refund(rows: &[&stockd_core::ReservationLine], qty: i64) -> RefundSplit {
    // Pre-built kits and plain lines count in line units; a kit's component
    // rows count in kits (units ÷ per kit, the scarcest component).
    let plain: Vec<&&stockd_core::ReservationLine> =
        rows.iter().filter(|r| r.kit.is_none()).collect();
    let mut components: Vec<(Sku, i64, Vec<&stockd_core::ReservationLine>)> = Vec::new();
    for row in rows.iter().filter(|r| r.kit.is_some()) {
        let per_kit = row.kit.as_ref().map_or(1, |k| k.per_kit_qty.max(1));
        match components.iter_mut().find(|(sku, _, _)| *sku == row.sku) {
            Some((_, _, group)) => group.push(row),
            None => components.push((row.sku.clone(), per_kit, vec![row])),
        }
    }
    let in_kits = |f: fn(&stockd_core::ReservationLine) -> i64| -> i64 {
        let plain: i64 = plain.iter().map(|r| f(r)).sum();
        let kits = components
            .iter()
            .map(|(_, per_kit, group)| group.iter().map(|r| f(r)).sum::<i64>() / per_kit)
            .min()
            .unwrap_or(0);
        plain + kits
    };
    let open = in_kits(stockd_core::ReservationLine::open_qty);
    let shipped = in_kits(|r| r.shipped_qty);
    let release_qty = qty.min(open).max(0);
    let mut to_return = (qty - release_qty).min(shipped).max(0);
    let mut returned = Vec::new();
    // Plain (or pre-built kit) units first, from where they shipped.
    for row in plain.iter().filter(|r| r.shipped_qty > 0) {
        let take = to_return.min(row.shipped_qty);
        if take > 0 {
            returned.push((row.sku.clone(), row.location.clone(), take));
            to_return -= take;
        }
    }
    if to_return > 0 {
        for (sku, per_kit, group) in &components {
            let mut units = to_return * per_kit;
            for row in group.iter().filter(|r| r.shipped_qty > 0) {
                let take = units.min(row.shipped_qty);
                if take > 0 {
                    returned.push((sku.clone(), row.location.clone(), take));
                    units -= take;
                }
            }
        }
    }
    RefundSplit {
        release_qty,
        returned,
    }
}

/// A refund of an order stockd knows: one atomic request releasing what is
/// still reserved and, when the channel restocked, receiving back as a
/// return under the RMA `{channel}:{dedup key}` what was shipped — verified
/// sellable at once on a channel with "restock on refund". Without restock
/// shipped units stay with the customer. `None` when stockd does not know
/// the order (the refund then waits for it as a cancel).
async fn apply_refund(
    store: &dyn Store,
    index: &ListingIndex,
    channel_id: &ChannelId,
    change: &OrderChange,
) -> Result<Option<(&'static str, Option<u64>)>, ChangeError> {
    let order = stockd_core::OrderRef {
        channel: Some(channel_id.clone()),
        order_id: stockd_core::OrderId::parse(change.order_id.clone())
            .map_err(|e| ChangeError::Invalid(format!("order_id: {e}")))?,
    };
    let rows = store.order_reservations(&order).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let skus = index.map(store, channel_id, change).await?;
    let mut unmapped = Vec::new();
    let key = |suffix: &str| format!("{channel_id}:{}:{suffix}", change.dedup_key);
    let rma_id = format!("{channel_id}:{}", change.dedup_key);
    let restocked = change.kind == OrderChangeKind::Restocked;
    let verify_at_once = restocked && index.restock_on_refund.contains(channel_id);
    let mut release = Vec::new();
    let mut events = Vec::new();
    for (line, sku) in change.lines.iter().zip(&skus) {
        let line_rows: Vec<&stockd_core::ReservationLine> = rows
            .iter()
            .filter(|r| r.line_id.as_str() == line.line_id)
            .collect();
        if line_rows.is_empty() {
            if sku.is_none() {
                // Its order line waits for a listing too: the refund of it
                // waits with it and replays after it.
                unmapped.push(line.clone());
                continue;
            }
            tracing::warn!(channel = %channel_id, order = %change.order_id, line = %line.line_id,
                "refunded line was never reserved by stockd; nothing to release or receive back");
            continue;
        }
        let split = split_refund(&line_rows, line.qty);
        if split.release_qty > 0 {
            release.push(serde_json::json!({"line_id": line.line_id, "qty": split.release_qty}));
        }
        for (sku, location, qty) in split.returned.into_iter().filter(|_| restocked) {
            let line_key = format!("{}:{sku}@{location}", line.line_id);
            events.push(serde_json::json!({
                "key": key(&format!("return:{line_key}")),
                "type": "return_received",
                "rma_id": rma_id,
                "sku": sku.as_str(),
                "location": location.as_str(),
                "qty": qty,
                "source": "webhook",
            }));
            if verify_at_once {
                events.push(serde_json::json!({
                    "key": key(&format!("verify:{line_key}")),
                    "type": "return_verified",
                    "rma_id": rma_id,
                    "sku": sku.as_str(),
                    "location": location.as_str(),
                    "sellable_qty": qty,
                    "unsellable_qty": 0,
                    "source": "webhook",
                }));
            }
        }
    }
    if !release.is_empty() {
        events.insert(
            0,
            serde_json::json!({
                "key": key("release"),
                "type": "cancel",
                "channel": channel_id.as_str(),
                "order_id": change.order_id,
                "lines": release,
                "reason": "refunded on the channel before shipment",
                "source": "webhook",
            }),
        );
    }
    let kept = keep_unmapped(store, channel_id, change, unmapped).await?;
    if events.is_empty() {
        // Nothing to do now: lines kept until they map, or a refund of
        // shipped units without restock.
        let status = if kept { "quarantined" } else { "ignored" };
        return Ok(Some((status, None)));
    }
    let mut submissions = Vec::with_capacity(events.len());
    for value in events {
        let input: EventInput =
            serde_json::from_value(value).map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let event = Event::validate(&input).map_err(|problems| {
            ChangeError::Invalid(
                problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        submissions.push(stockd_store::submission(event));
    }
    let results = match store.submit(submissions).await? {
        Ok(results) => results,
        Err(refused) => {
            tracing::warn!(channel = %channel_id, order = %change.order_id, error = ?refused,
                "channel refund refused by the ledger");
            return Ok(Some(("refused", None)));
        }
    };
    let status = if results.iter().all(|r| r.status == EventStatus::Duplicate) {
        "duplicate"
    } else if results.iter().any(|r| r.status == EventStatus::Quarantined) {
        "quarantined"
    } else {
        "applied"
    };
    if status != "duplicate" {
        let moves = index.moves(channel_id, change, &skus);
        if let Err(e) = store.outbox_channel_moved(channel_id, moves).await {
            tracing::warn!(channel = %channel_id, error = %e, "could not follow the channel's count");
        }
    }
    let seq = results.iter().filter_map(|r| r.seq).max();
    Ok(Some((status, seq)))
}

/// Applies one order change of `channel` (from a webhook or a poll): maps
/// its lines to SKUs, submits the ledger event (idempotent by the change's
/// dedup key) and follows the channel's own count. Lines that map to no
/// listing are kept until one does (`keep_unmapped`). Returns the status
/// (`applied`, `duplicate`, `quarantined`, `refused`, `ignored`) and the
/// ledger sequence.
pub async fn apply_change(
    store: &dyn Store,
    index: &ListingIndex,
    channel_id: &ChannelId,
    change: &OrderChange,
) -> Result<(&'static str, Option<u64>), ChangeError> {
    if matches!(
        change.kind,
        OrderChangeKind::Restocked | OrderChangeKind::Refunded
    ) {
        if let Some(outcome) = apply_refund(store, index, channel_id, change).await? {
            return Ok(outcome);
        }
    }
    let skus = index.map(store, channel_id, change).await?;
    let unmapped: Vec<OrderLineRef> = change
        .lines
        .iter()
        .zip(&skus)
        .filter(|(_, sku)| sku.is_none())
        .map(|(line, _)| line.clone())
        .collect();
    let kept = keep_unmapped(store, channel_id, change, unmapped).await?;
    let event = match event_for(channel_id, change, &skus) {
        Ok(Some(event)) => event,
        Ok(None) if kept => return Ok(("quarantined", None)),
        Ok(None) => return Ok(("ignored", None)),
        Err(problems) => {
            let message = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ChangeError::Invalid(message));
        }
    };
    // The channel's own count moves in the order's transaction; a whole-order
    // cancel names no quantities, so what it released is read after it.
    let whole_cancel = whole_order_cancel(change);
    let moves = if whole_cancel {
        Vec::new()
    } else {
        index.moves(channel_id, change, &skus)
    };
    let outcome = store
        .submit_channel_order(vec![stockd_store::submission(event)], channel_id, moves)
        .await?;
    let result = match outcome {
        Ok(mut results) if !results.is_empty() => results.remove(0),
        Ok(_) => return Ok(("ignored", None)),
        Err(refused) => {
            // The channel cannot fix this by resending: report it as taken
            // so it stops retrying, and say why in the log.
            tracing::warn!(channel = %channel_id, order = %change.order_id, error = ?refused,
                "channel order refused by the ledger");
            return Ok(("refused", None));
        }
    };
    let status = match result.status {
        EventStatus::Applied => "applied",
        EventStatus::Duplicate => "duplicate",
        EventStatus::Quarantined => "quarantined",
    };
    if let (true, EventStatus::Applied, Some(seq)) = (whole_cancel, result.status, result.seq) {
        let moves = released_unknown(store, channel_id, &change.order_id, seq).await;
        if let Err(e) = store.outbox_channel_moved(channel_id, moves).await {
            tracing::warn!(channel = %channel_id, error = %e, "could not follow the channel's count");
        }
    }
    Ok((status, result.seq))
}

/// Keeps `lines` of `change` (those mapping to no listing) so that a
/// listing created later replays them: the whole change under its own dedup
/// key, or, when some lines did map, a change of just these lines under
/// `{dedup key}:unmapped`. A redelivery keeps the first record. True when
/// something was kept.
async fn keep_unmapped(
    store: &dyn Store,
    channel_id: &ChannelId,
    change: &OrderChange,
    lines: Vec<OrderLineRef>,
) -> Result<bool, ChangeError> {
    if lines.is_empty() {
        return Ok(false);
    }
    let dedup_key = if lines.len() == change.lines.len() {
        change.dedup_key.clone()
    } else {
        format!("{}:unmapped", change.dedup_key)
    };
    let item_keys = serde_json::json!(lines.iter().map(|l| &l.keys).collect::<Vec<_>>());
    let kept = OrderChange {
        dedup_key: dedup_key.clone(),
        order_id: change.order_id.clone(),
        kind: change.kind,
        lines,
    };
    let json = |value: serde_json::Result<serde_json::Value>| {
        value.map_err(|e| ChangeError::Invalid(e.to_string()))
    };
    let kind = json(serde_json::to_value(change.kind))?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = store
        .record_unmapped(stockd_store::unmapped::UnmappedChange {
            channel: channel_id.clone(),
            dedup_key,
            order_id: change.order_id.clone(),
            kind,
            item_keys,
            change: json(serde_json::to_value(&kept))?,
            received_at: chrono::Utc::now(),
        })
        .await?;
    tracing::info!(channel = %channel_id, order = %change.order_id, id,
        "order lines without a listing on this channel are kept until one maps them");
    Ok(true)
}

/// Replays the kept changes of `channel_id` whose lines all map now (a
/// listing was created or changed), in the order they came, through
/// `apply_change`, and takes each once applied. A replay is idempotent by
/// the change's dedup key: replaying twice applies once. Returns how many
/// were taken.
pub async fn replay_unmapped(
    store: &dyn Store,
    index: &ListingIndex,
    channel_id: &ChannelId,
) -> Result<usize, ChangeError> {
    const PAGE: u32 = 500;
    let mut taken = 0;
    let mut after_id = 0;
    loop {
        let page = store.unmapped(channel_id, after_id, PAGE).await?;
        for row in &page {
            after_id = row.id;
            let change: OrderChange = match serde_json::from_value(row.change.change.clone()) {
                Ok(change) => change,
                Err(e) => {
                    tracing::warn!(channel = %channel_id, id = row.id, error = %e,
                        "a kept unmapped change cannot be read; it stays");
                    continue;
                }
            };
            let skus = index.map(store, channel_id, &change).await?;
            if skus.iter().any(Option::is_none) {
                continue;
            }
            let (status, _) = apply_change(store, index, channel_id, &change).await?;
            tracing::info!(channel = %channel_id, order = %change.order_id, status,
                "a kept unmapped change was replayed");
            if store.take_unmapped(row.id).await? {
                taken += 1;
            }
        }
        if page.len() < PAGE as usize {
            return Ok(taken);
        }
    }
}

/// `replay_unmapped` for every channel (at start); failures are logged and
/// the changes stay kept for the next listing upsert.
pub async fn replay_unmapped_everywhere(store: Arc<dyn Store>, index: Arc<ListingIndex>) {
    let channels = match store.channels().await {
        Ok(channels) => channels,
        Err(e) => {
            tracing::warn!(error = %e, "listing channels to replay unmapped order lines failed");
            return;
        }
    };
    for channel in channels {
        match replay_unmapped(&*store, &index, &channel.id).await {
            Ok(0) => {}
            Ok(taken) => tracing::info!(channel = %channel.id, taken,
                "kept unmapped order changes applied at start"),
            Err(e) => tracing::warn!(channel = %channel.id, error = %e,
                "replaying unmapped order lines failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockd_core::ledger::KitPart;
    use stockd_core::{LineId, LocationId, OrderId, OrderRef, ReservationLine};

    fn row(
        sku: &str,
        location: &str,
        ordered: i64,
        shipped: i64,
        kit: Option<i64>,
    ) -> ReservationLine {
        ReservationLine {
            order: OrderRef {
                channel: None,
                order_id: OrderId::parse("1").unwrap(),
            },
            line_id: LineId::parse("1").unwrap(),
            alloc_index: 0,
            sku: Sku::parse(sku).unwrap(),
            location: LocationId::parse(location).unwrap(),
            ordered_qty: ordered,
            shipped_qty: shipped,
            cancelled_qty: 0,
            kit: kit.map(|per_kit_qty| KitPart {
                kit_sku: Sku::parse("K").unwrap(),
                per_kit_qty,
            }),
        }
    }

    fn returned(split: &RefundSplit) -> Vec<(&str, &str, i64)> {
        split
            .returned
            .iter()
            .map(|(s, l, q)| (s.as_str(), l.as_str(), *q))
            .collect()
    }

    #[test]
    fn a_refund_releases_what_is_reserved_and_returns_what_shipped() {
        // 5 ordered over two locations, 3 shipped (2 from W1, 1 from W2).
        let rows = [row("A", "W1", 3, 2, None), row("A", "W2", 2, 1, None)];
        let rows: Vec<&ReservationLine> = rows.iter().collect();
        let split = split_refund(&rows, 4);
        assert_eq!(split.release_qty, 2);
        assert_eq!(returned(&split), [("A", "W1", 2)]);
        let split = split_refund(&rows, 9);
        assert_eq!(split.release_qty, 2);
        assert_eq!(returned(&split), [("A", "W1", 2), ("A", "W2", 1)]);
    }

    #[test]
    fn a_notification_of_several_changes_reports_the_most_telling_status() {
        assert_eq!(
            combined(&[
                ("duplicate", Some(4)),
                ("applied", Some(9)),
                ("ignored", None)
            ]),
            ("applied", Some(9))
        );
        assert_eq!(
            combined(&[("duplicate", Some(4)), ("duplicate", Some(5))]),
            ("duplicate", Some(5))
        );
        assert_eq!(combined(&[]), ("ignored", None));
    }

    #[test]
    fn a_shipped_kit_comes_back_as_its_components() {
        // One kit of 2 × B + 1 × C, assembled and shipped.
        let rows = [row("B", "W1", 2, 2, Some(2)), row("C", "W1", 1, 1, Some(1))];
        let rows: Vec<&ReservationLine> = rows.iter().collect();
        let split = split_refund(&rows, 1);
        assert_eq!(split.release_qty, 0);
        assert_eq!(returned(&split), [("B", "W1", 2), ("C", "W1", 1)]);
    }

    #[test]
    fn a_channel_whose_count_does_not_follow_orders_has_its_belief_forgotten() {
        let transport: Arc<dyn stockd_channels::Transport> = Arc::new(
            stockd_channels::ReqwestTransport::new(std::time::Duration::from_secs(1))
                .expect("transport"),
        );
        let id = |s: &str| ChannelId::parse(s.to_string()).expect("id");
        let connections = [
            crate::outbound::dispatch::Connection {
                channel: id("bol"),
                connector: Arc::new(stockd_channels::bol::Bol::new(
                    Default::default(),
                    transport.clone(),
                )),
            },
            crate::outbound::dispatch::Connection {
                channel: id("shop"),
                connector: Arc::new(stockd_channels::shopify::Shopify::new(
                    Default::default(),
                    transport,
                )),
            },
        ];
        let index = ListingIndex::new(BTreeSet::new()).with_connections(&connections);
        let line = |id: &str, qty| OrderLineRef {
            line_id: id.into(),
            keys: vec![("sku".into(), "A".into())],
            qty,
        };
        let cancel = OrderChange {
            dedup_key: "1:cancelled".into(),
            order_id: "1".into(),
            kind: OrderChangeKind::Cancelled,
            lines: vec![line("1", 2), line("2", 1)],
        };
        let sku = Sku::parse("A".to_string()).expect("sku");
        let skus = [Some(sku.clone()), Some(sku.clone())];
        // bol.com restocks a cancelled order only if it was placed after the
        // last update bol applied: the figure is sent again, whole.
        assert_eq!(
            index.moves(&id("bol"), &cancel, &skus),
            [(sku.clone(), None)]
        );
        // A shop's count rises by the cancelled lines.
        assert_eq!(
            index.moves(&id("shop"), &cancel, &skus),
            [(sku.clone(), Some(2)), (sku, Some(1))]
        );
    }
}
