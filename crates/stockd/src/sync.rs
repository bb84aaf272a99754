//! The dispatcher: one worker per connected channel, running inside
//! `stockd serve`. Each round it takes the channel's lagging listings from
//! the outbox (oldest first), applies the change budget, pushes one batch
//! through the connector (which paces itself with the channel's rate-limit
//! signals) and records what the channel said: acknowledged, retry later
//! (backoff with full jitter, never before `Retry-After`), or dead-lettered.
//! Everything it needs is in the database, so a crash or restart resumes
//! where it stopped.
//!
//! Latency is measured per update from the receipt of the event that caused
//! the desired state to the channel's acknowledgement.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::{ChannelError, Connector, ErrorClass, ItemOutcome, PushItem};
use stockd_core::availability::budget::{decide_push, PushDecision};
use stockd_core::availability::ListingState;
use stockd_core::retry::{RetryDecision, RetryPolicy};
use stockd_core::{ChannelId, Sku};
use stockd_store::outbox::{DeadLetter, OutboxRow, OutboxUpdate};
use stockd_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The outbox note of a listing whose update the change budget holds.
pub const HELD_BY_BUDGET: &str = "held by the change budget";

/// Most outbox rows one round takes (in connector-sized batches).
const ROUND_ROWS_MAX: usize = 1_000;

/// How often an idle worker looks for new work.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How often a worker re-reads the rules (for the change budget).
const RULES_REFRESH: Duration = Duration::from_secs(5);
/// Latency samples kept per channel for the percentiles.
const LATENCY_SAMPLES_MAX: usize = 100_000;

/// A channel connected to stockd.
#[derive(Clone)]
pub struct Connection {
    pub channel: ChannelId,
    pub connector: Arc<dyn Connector>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("channel", &self.channel)
            .field("kind", &self.connector.kind())
            .finish()
    }
}

/// Delivery figures per channel, for `/v1/kpis` and `/metrics`.
#[derive(Default)]
pub struct SyncKpis {
    inner: Mutex<BTreeMap<ChannelId, ChannelKpis>>,
    /// Where push attempts go for the audit trail and the daily figures.
    pub audit: std::sync::OnceLock<crate::audit::AuditSink>,
}

#[derive(Default, Clone)]
struct ChannelKpis {
    latency_ms: Vec<f64>,
    next_sample: usize,
    pushes: u64,
    items_acked: u64,
    failures: u64,
    rate_limited: u64,
    dead_lettered: u64,
    held_by_budget: u64,
}

/// Percentiles of a channel's update latency.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LatencyPercentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub samples: u64,
}

/// One channel's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelFigures {
    #[schema(value_type = String)]
    pub channel: ChannelId,
    /// Calls to the channel that pushed at least one item.
    pub pushes: u64,
    pub items_acked: u64,
    pub failures: u64,
    pub rate_limited: u64,
    pub dead_lettered: u64,
    pub held_by_budget: u64,
    /// Event received → channel acknowledged, in milliseconds.
    pub latency_ms: Option<LatencyPercentiles>,
}

/// The `p`-th percentile (nearest rank) of ascending `sorted`; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl SyncKpis {
    fn with(&self, channel: &ChannelId, f: impl FnOnce(&mut ChannelKpis)) {
        let mut map = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        f(map.entry(channel.clone()).or_default());
    }

    fn latency(&self, channel: &ChannelId, ms: f64) {
        self.with(channel, |k| {
            if k.latency_ms.len() < LATENCY_SAMPLES_MAX {
                k.latency_ms.push(ms);
            } else {
                k.latency_ms[k.next_sample] = ms;
                k.next_sample = (k.next_sample + 1) % LATENCY_SAMPLES_MAX;
            }
            k.items_acked += 1;
        });
    }

    /// The latency samples (ms) kept for `channel`.
    pub fn samples(&self, channel: &ChannelId) -> Vec<f64> {
        match self.inner.lock() {
            Ok(m) => m
                .get(channel)
                .map(|k| k.latency_ms.clone())
                .unwrap_or_default(),
            Err(p) => p
                .into_inner()
                .get(channel)
                .map(|k| k.latency_ms.clone())
                .unwrap_or_default(),
        }
    }

    /// Every channel's figures.
    pub fn figures(&self) -> Vec<ChannelFigures> {
        let map = match self.inner.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        };
        map.into_iter()
            .map(|(channel, k)| {
                let mut sorted = k.latency_ms.clone();
                sorted.sort_by(f64::total_cmp);
                ChannelFigures {
                    channel,
                    pushes: k.pushes,
                    items_acked: k.items_acked,
                    failures: k.failures,
                    rate_limited: k.rate_limited,
                    dead_lettered: k.dead_lettered,
                    held_by_budget: k.held_by_budget,
                    latency_ms: (!sorted.is_empty()).then(|| LatencyPercentiles {
                        p50: percentile(&sorted, 50.0),
                        p95: percentile(&sorted, 95.0),
                        p99: percentile(&sorted, 99.0),
                        samples: sorted.len() as u64,
                    }),
                }
            })
            .collect()
    }

    /// The figures in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let figures = self.figures();
        let _ = writeln!(
            out,
            "# HELP stockd_sync_latency_ms Event received to channel acknowledged, in milliseconds.\n# TYPE stockd_sync_latency_ms summary"
        );
        for f in &figures {
            if let Some(l) = f.latency_ms {
                for (q, v) in [("0.5", l.p50), ("0.95", l.p95), ("0.99", l.p99)] {
                    let _ = writeln!(
                        out,
                        "stockd_sync_latency_ms{{channel=\"{}\",quantile=\"{q}\"}} {v}",
                        f.channel
                    );
                }
                let _ = writeln!(
                    out,
                    "stockd_sync_latency_ms_count{{channel=\"{}\"}} {}",
                    f.channel, l.samples
                );
            }
        }
        for (name, help, get) in [
            (
                "stockd_sync_pushes_total",
                "Calls to the channel that pushed updates.",
                (|f: &ChannelFigures| f.pushes) as fn(&ChannelFigures) -> u64,
            ),
            (
                "stockd_sync_items_acked_total",
                "Updates the channel acknowledged.",
                |f| f.items_acked,
            ),
            (
                "stockd_sync_failures_total",
                "Failed update attempts.",
                |f| f.failures,
            ),
            (
                "stockd_sync_rate_limited_total",
                "Updates deferred by the channel's rate limit.",
                |f| f.rate_limited,
            ),
            (
                "stockd_sync_dead_lettered_total",
                "Updates moved to the dead-letter queue.",
                |f| f.dead_lettered,
            ),
            (
                "stockd_sync_held_by_budget_total",
                "Updates held by the change budget.",
                |f| f.held_by_budget,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for f in &figures {
                let _ = writeln!(out, "{name}{{channel=\"{}\"}} {}", f.channel, get(f));
            }
        }
    }
}

/// The running workers.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts one worker per connection.
    pub fn start(
        store: Arc<dyn Store>,
        connections: Vec<Connection>,
        policy: RetryPolicy,
        kpis: Arc<SyncKpis>,
        index: Arc<crate::webhooks::ListingIndex>,
    ) -> Dispatcher {
        let (stop, stopped) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = connections
            .iter()
            .filter(|c| c.connector.polls_orders())
            .map(|c| {
                tokio::spawn(poll_orders(
                    store.clone(),
                    c.clone(),
                    index.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        tasks.extend(connections.into_iter().map(|connection| {
            let worker = Worker {
                store: store.clone(),
                channel: connection.channel,
                connector: connection.connector,
                policy,
                kpis: kpis.clone(),
                rng: Rng::seeded(),
                budget_per_day: None,
                rules_read_at: None,
            };
            tokio::spawn(worker.run(stopped.clone()))
        }));
        Dispatcher { stop, tasks }
    }

    /// Stops the workers after their current round.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Polls a channel without order push (bol, Amazon) and applies what it
/// reports, as webhooks are applied. The cursor lives in memory: after a
/// restart the connector looks back far enough, and re-reading an order is
/// harmless (changes are idempotent by their dedup key).
async fn poll_orders(
    store: Arc<dyn Store>,
    connection: Connection,
    index: Arc<crate::webhooks::ListingIndex>,
    mut stopped: watch::Receiver<bool>,
) {
    let channel = connection.channel;
    let mut cursor: Option<String> = None;
    loop {
        if *stopped.borrow() {
            break;
        }
        let wait = match connection.connector.poll_orders(cursor.as_deref()).await {
            Ok(poll) => {
                let mut complete = true;
                for change in &poll.changes {
                    if let Err(e) =
                        crate::webhooks::apply_change(&*store, &index, &channel, change).await
                    {
                        tracing::error!(channel = %channel, order = %change.order_id, error = %e,
                            "applying a polled order change failed; it is read again next poll");
                        complete = false;
                        break;
                    }
                }
                if complete {
                    cursor = poll.cursor;
                }
                poll.next_poll_after
            }
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "order poll failed");
                e.retry_after.unwrap_or(Duration::from_secs(30))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// A small xorshift generator: backoff jitter, the demo's sample traffic
/// (no cryptographic use).
pub(crate) struct Rng(u64);

impl Rng {
    /// A fixed sequence (the demo's traffic is repeatable).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Rng::new(nanos)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In [0, n).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

struct Worker {
    store: Arc<dyn Store>,
    channel: ChannelId,
    connector: Arc<dyn Connector>,
    policy: RetryPolicy,
    kpis: Arc<SyncKpis>,
    rng: Rng,
    budget_per_day: Option<u32>,
    rules_read_at: Option<tokio::time::Instant>,
}

/// The change budget of a channel kind when the rules set none: Google
/// accepts about two product updates a day.
fn default_budget(kind: &str) -> Option<u32> {
    (kind == "gmc").then_some(2)
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Worker {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        tracing::info!(channel = %self.channel, kind = self.connector.kind(), "sync worker started");
        loop {
            if *stopped.borrow() {
                break;
            }
            let worked = match self.round().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, "sync round failed");
                    false
                }
            };
            if !worked {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
        tracing::info!(channel = %self.channel, "sync worker stopped");
    }

    async fn refresh_rules(&mut self) -> Result<(), StoreError> {
        let due = self
            .rules_read_at
            .is_none_or(|at| at.elapsed() >= RULES_REFRESH);
        if !due {
            return Ok(());
        }
        self.rules_read_at = Some(tokio::time::Instant::now());
        let setup = crate::availability::Setup::load(&*self.store).await?;
        let rules = crate::availability::active_rules(&*self.store, &setup).await?;
        self.budget_per_day = rules
            .rules
            .pushes_per_day(&self.channel)
            .or_else(|| default_budget(self.connector.kind()));
        Ok(())
    }

    /// One batch: returns how many listings it handled.
    async fn round(&mut self) -> Result<usize, StoreError> {
        self.refresh_rules().await?;
        let now = Utc::now();
        // Several connector batches per round: one read and one write of the
        // outbox serve them all.
        let batch = self.connector.max_batch().max(1);
        let limit = u32::try_from(batch.max(ROUND_ROWS_MAX)).unwrap_or(u32::MAX);
        let due = self.store.outbox_due(&self.channel, now, limit).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut updates = Vec::new();
        let mut to_send: Vec<OutboxRow> = Vec::new();
        for row in due {
            let carries_quantity = self.connector.carries_quantity();
            // What the channel shows: the last acknowledged state, with the
            // channel's own count where it moved since (it sold or restocked).
            let shown = row.pushed.clone().map(|pushed| ListingState {
                quantity: row.channel_quantity.unwrap_or(pushed.quantity),
                ..pushed
            });
            // A channel that shows no quantity only needs availability changes.
            let desired = match (&shown, carries_quantity) {
                (Some(shown), false) => ListingState {
                    quantity: shown.quantity,
                    ..row.desired.clone()
                },
                _ => row.desired.clone(),
            };
            // Nothing to send only when stockd set exactly this state and the
            // channel's count has not moved since. A count that moved to the
            // desired value on its own is still pushed: the belief follows
            // sales relatively and may be off, and compare-and-set corrects it.
            let in_sync = match &row.pushed {
                Some(pushed) if carries_quantity => {
                    // An unknown count is not in sync: the push reads it first.
                    *pushed == row.desired && row.channel_quantity == Some(row.desired.quantity)
                }
                Some(pushed) => {
                    shown.as_ref() == Some(&desired) && pushed.availability == desired.availability
                }
                None => false,
            };
            if in_sync {
                updates.push(acked(&row, &row.desired, None, now, false));
                continue;
            }
            match decide_push(
                &row.recent_pushes,
                now,
                &desired,
                shown.as_ref(),
                self.budget_per_day,
            ) {
                PushDecision::Hold { until } => {
                    self.kpis.with(&self.channel, |k| k.held_by_budget += 1);
                    updates.push(OutboxUpdate::Deferred {
                        channel: row.channel.clone(),
                        sku: row.sku.clone(),
                        until,
                        note: Some(HELD_BY_BUDGET.into()),
                    });
                }
                PushDecision::Unchanged | PushDecision::Push { .. } => to_send.push(row),
            }
        }
        let mut handled = updates.len();
        for chunk in to_send.chunks(batch) {
            let (chunk_updates, rate_limited) = self.push(chunk).await?;
            updates.extend(chunk_updates);
            handled += chunk.len();
            if rate_limited {
                // The rest waits for the next round, after the channel's wait.
                break;
            }
        }
        self.store.outbox_record(updates).await?;
        Ok(handled)
    }

    /// Pushes one connector batch; also says whether the channel asked us to
    /// slow down.
    async fn push(&mut self, rows: &[OutboxRow]) -> Result<(Vec<OutboxUpdate>, bool), StoreError> {
        let skus: Vec<Sku> = rows.iter().map(|r| r.sku.clone()).collect();
        let listings: BTreeMap<Sku, stockd_channels::External> = self
            .store
            .listings_of(&skus)
            .await?
            .into_iter()
            .filter(|l| l.channel == self.channel)
            .map(|l| (l.sku, l.external))
            .collect();
        let mut updates = Vec::new();
        let mut items = Vec::new();
        let mut sent_rows = Vec::new();
        for row in rows {
            let Some(external) = listings.get(&row.sku) else {
                // The listing was removed: nothing to send; the row is settled.
                updates.push(acked(row, &row.desired, None, Utc::now(), false));
                continue;
            };
            items.push(PushItem {
                sku: row.sku.as_str().to_string(),
                external: external.clone(),
                quantity: row.desired.quantity.max(0),
                availability: row.desired.availability,
                eta: row.desired.eta,
                believed: row.channel_quantity,
                idempotency_key: format!("{}:{}:{}", row.channel, row.sku, row.desired_gen),
                reference: match row.caused_seq {
                    Some(seq) => format!("stockd://ledger/{seq}"),
                    None => format!("stockd://rules/{}", row.rules_version.unwrap_or(0)),
                },
            });
            sent_rows.push(row);
        }
        if items.is_empty() {
            return Ok((updates, false));
        }
        self.kpis.with(&self.channel, |k| k.pushes += 1);
        let outcomes = match self.connector.push(&items).await {
            Ok(outcomes) if outcomes.len() == items.len() => outcomes,
            Ok(outcomes) => {
                let e = ChannelError::new(
                    ErrorClass::Retryable,
                    "connector_mismatch",
                    format!("{} results for {} items", outcomes.len(), items.len()),
                );
                vec![ItemOutcome::Failed(e); items.len()]
            }
            Err(e) => vec![ItemOutcome::Failed(e); items.len()],
        };
        let now = Utc::now();
        let rate_limited = outcomes
            .iter()
            .any(|o| matches!(o, ItemOutcome::Failed(e) if e.class == ErrorClass::RateLimited));
        for ((row, outcome), item) in sent_rows.into_iter().zip(outcomes).zip(&items) {
            let audit_outcome = self
                .kpis
                .audit
                .get()
                .cloned()
                .map(|sink| (sink, outcome.clone()));
            let updates_before = updates.len();
            tracing::debug!(channel = %self.channel, sku = %row.sku, gen = row.desired_gen,
                desired = row.desired.quantity, believed = ?row.channel_quantity,
                outcome = ?outcome, "push outcome");
            match outcome {
                ItemOutcome::Applied { quantity } => {
                    let ms = (now - row.caused_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    self.kpis.latency(&self.channel, ms.max(0.0));
                    updates.push(acked(row, &row.desired, Some(quantity), now, true));
                }
                ItemOutcome::Failed(error) => updates.extend(self.failed(row, error, now)),
            }
            // The audit trail (written off this path, see `audit`).
            if let Some((sink, outcome)) = audit_outcome {
                let dead = updates[updates_before..]
                    .iter()
                    .any(|u| matches!(u, OutboxUpdate::Dead { .. }));
                sink.record(crate::audit::attempt(row, item, &outcome, now, dead));
            }
        }
        Ok((updates, rate_limited))
    }

    fn failed(
        &mut self,
        row: &OutboxRow,
        error: ChannelError,
        now: DateTime<Utc>,
    ) -> Vec<OutboxUpdate> {
        let channel = row.channel.clone();
        let sku = row.sku.clone();
        match error.class {
            ErrorClass::RateLimited => {
                self.kpis.with(&self.channel, |k| k.rate_limited += 1);
                let wait = error
                    .retry_after
                    .unwrap_or_else(|| self.policy.backoff(1, self.rng.next_unit(), None));
                vec![OutboxUpdate::Deferred {
                    channel,
                    sku,
                    until: later(now, wait),
                    note: Some(format!("rate limited: {}", error.code)),
                }]
            }
            ErrorClass::Stale => {
                // The channel's count moved (it sold): adopt its count and
                // send again; attempts count so a flapping count ends.
                let mut out = vec![OutboxUpdate::ChannelQuantity {
                    channel,
                    sku,
                    quantity: error.current,
                }];
                out.extend(self.retry_or_dead(row, error, now));
                out
            }
            ErrorClass::Retryable => self.retry_or_dead(row, error, now),
            ErrorClass::Permanent => {
                self.kpis.with(&self.channel, |k| k.dead_lettered += 1);
                vec![dead(row, &error, row.attempts + 1, now)]
            }
        }
    }

    fn retry_or_dead(
        &mut self,
        row: &OutboxRow,
        error: ChannelError,
        now: DateTime<Utc>,
    ) -> Vec<OutboxUpdate> {
        self.kpis.with(&self.channel, |k| k.failures += 1);
        let attempts = row.attempts + 1;
        let age = to_std(now - row.dirty_since.unwrap_or(now));
        let retry_in = if error.class == ErrorClass::Stale {
            Some(Duration::ZERO)
        } else {
            error.retry_after
        };
        match self
            .policy
            .decide(attempts, age, self.rng.next_unit(), retry_in)
        {
            RetryDecision::RetryAfter(wait) => vec![OutboxUpdate::Failed {
                channel: row.channel.clone(),
                sku: row.sku.clone(),
                attempts,
                next_attempt_at: later(
                    now,
                    if error.class == ErrorClass::Stale {
                        Duration::ZERO
                    } else {
                        wait
                    },
                ),
                error: format!("{}: {}", error.code, error.message),
            }],
            RetryDecision::DeadLetter => {
                self.kpis.with(&self.channel, |k| k.dead_lettered += 1);
                vec![dead(row, &error, attempts, now)]
            }
        }
    }
}

fn acked(
    row: &OutboxRow,
    state: &ListingState,
    channel_quantity: Option<i64>,
    at: DateTime<Utc>,
    counted: bool,
) -> OutboxUpdate {
    OutboxUpdate::Acked {
        channel: row.channel.clone(),
        sku: row.sku.clone(),
        gen: row.desired_gen,
        state: state.clone(),
        channel_quantity,
        at,
        counted,
        recent_before: row.recent_pushes.clone(),
        channel_gen: row.channel_gen,
    }
}

fn dead(row: &OutboxRow, error: &ChannelError, attempts: u32, at: DateTime<Utc>) -> OutboxUpdate {
    OutboxUpdate::Dead {
        letter: DeadLetter {
            id: 0,
            channel: row.channel.clone(),
            sku: row.sku.clone(),
            desired_gen: row.desired_gen,
            desired: row.desired.clone(),
            code: error.code.clone(),
            message: error.message.clone(),
            status: error.status,
            body: error.body.clone(),
            attempts,
            created_at: at,
        },
    }
}
