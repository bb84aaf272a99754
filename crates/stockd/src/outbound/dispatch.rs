//! The dispatcher: one worker per connected channel, running inside
//! `stockd serve`. Each round it reads the channel's lagging listings from
//! the outbox — protective updates (they lower what the channel shows)
//! before any other, oldest first within each class — applies the change
//! budget, marks the rows in flight and starts pushes through the connector
//! in free slots: protective updates in small pushes on the channel's fast
//! path, the rest in bulk. Pushes resolve on their own (bol's process
//! statuses, Amazon's feeds) while the worker goes on sending within the
//! channel's rate limits; each records what the channel said: acknowledged,
//! corrected (a compare-and-set conflict), retry later (backoff with full
//! jitter, never before `Retry-After`), or dead-lettered. Everything it
//! needs is in the database, so a crash or restart resumes where it stopped:
//! what a channel accepted and acknowledges later (bol process statuses,
//! Amazon feeds) is kept with the channel's reference and resolved by the
//! channel's tracker (`tracker.rs`), not sent again; what had not been
//! accepted yet is sent again (values are absolute).
//!
//! On a shared PostgreSQL, a per-channel lease row makes exactly one
//! instance push to and poll each channel; another takes over when the
//! lease runs out.
//!
//! Latency is measured per update from the oldest cause the channel had
//! not acknowledged to the channel's acknowledgement.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::{ChannelError, Connector, ErrorClass, ItemOutcome, PushItem, Submitted};
use stockd_core::availability::budget::{decide_push, PushDecision};
use stockd_core::availability::ListingState;
use stockd_core::retry::{RetryDecision, RetryPolicy};
use stockd_core::{ChannelId, Sku};
use stockd_store::outbox::{Accepted, DeadLetter, OutboxRow, OutboxUpdate, SentUpdate};
use stockd_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::lanes::{self, Lane, LaneRoom};
use super::lock;
use super::stats::{percentile, Rng};

/// The outbox note of a listing whose update the change budget holds.
pub const HELD_BY_BUDGET: &str = "held by the change budget";

/// Most outbox rows one round reads.
const ROUND_ROWS_MAX: usize = 1_000;

/// How often an idle worker looks for new work.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// With one process on the database (SQLite) every change of the outbox
/// comes through this process's writer, whose commits wake the worker; the
/// idle poll is only a safety net then.
const IDLE_POLL_ALONE: Duration = Duration::from_secs(1);
/// How often a worker re-reads the rules (for the change budget).
const RULES_REFRESH: Duration = Duration::from_secs(5);
/// Latency samples kept per channel and class for the percentiles.
const LATENCY_SAMPLES_MAX: usize = 100_000;
/// A channel lease lasts this long unless renewed…
const LEASE_TTL: Duration = Duration::from_secs(6);
/// …which its holder does this often; another instance tries as often, so
/// it takes over within `LEASE_TTL + LEASE_RENEW` of the holder's death.
const LEASE_RENEW: Duration = Duration::from_secs(2);
/// The holder stops starting work this long before its lease runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// How often a worker or poller without the lease looks again.
const LEASE_WAIT: Duration = Duration::from_millis(500);
/// No round takes an in-flight row before this (longer than any push
/// follows its channel: bol's process statuses, Amazon's feed timeout).
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Attempts at recording a push's outcome, this far apart.
const RECORD_ATTEMPTS: u32 = 3;
/// Listings parked by a transient failure go back in line after
/// `RetryPolicy::revive_after` once the channel acknowledges pushes again;
/// on a channel that acknowledges nothing (a quiet channel, or one still
/// down) a probe sends them every twice `revive_after`, twice as long after
/// each probe that still found listings parked, up to this. A quiet
/// channel's decrease parked by an outage waits about a minute, not ten.
const REVIVE_PROBE: Duration = Duration::from_secs(10 * 60);
const STORE_RETRY: Duration = Duration::from_secs(1);

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
    pub audit: std::sync::OnceLock<crate::outbound::audit::AuditSink>,
    /// Protective updates per channel that a round took (no longer due in
    /// the outbox) and whose push has not answered yet: a reconciliation
    /// read waits for these as for due ones.
    protective_unsent: Mutex<BTreeMap<ChannelId, usize>>,
}

impl SyncKpis {
    /// Protective updates taken by this instance's dispatcher for `channel`
    /// and not yet answered by the channel.
    pub fn protective_unsent(&self, channel: &ChannelId) -> usize {
        lock(&self.protective_unsent)
            .get(channel)
            .copied()
            .unwrap_or(0)
    }

    fn protective_taken(&self, channel: &ChannelId, n: usize, taken: bool) {
        if n == 0 {
            return;
        }
        let mut unsent = lock(&self.protective_unsent);
        let count = unsent.entry(channel.clone()).or_default();
        *count = if taken {
            count.saturating_add(n)
        } else {
            count.saturating_sub(n)
        };
    }
}

/// A ring of latency samples (milliseconds).
#[derive(Default, Clone)]
struct Samples {
    ms: Vec<f64>,
    next: usize,
}

impl Samples {
    fn push(&mut self, ms: f64) {
        if self.ms.len() < LATENCY_SAMPLES_MAX {
            self.ms.push(ms);
        } else {
            self.ms[self.next] = ms;
            self.next = (self.next + 1) % LATENCY_SAMPLES_MAX;
        }
    }

    fn percentiles(&self) -> Option<LatencyPercentiles> {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        (!sorted.is_empty()).then(|| LatencyPercentiles {
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            samples: sorted.len() as u64,
        })
    }
}

#[derive(Default, Clone)]
struct ChannelKpis {
    protective: Samples,
    other: Samples,
    pushes: u64,
    items_acked: u64,
    failures: u64,
    corrections: u64,
    rate_limited: u64,
    dead_lettered: u64,
    held_by_budget: u64,
}

/// Which updates a latency sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateClass {
    /// Lowers what the channel shows (quantity down, or out of stock).
    Protective,
    Other,
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
    /// Compare-and-set conflicts: stockd's belief of the channel's count
    /// was corrected and the update sent again (not counted as attempts).
    pub corrections: u64,
    pub rate_limited: u64,
    pub dead_lettered: u64,
    pub held_by_budget: u64,
    /// Oldest unacknowledged cause → channel acknowledged, in milliseconds,
    /// all updates.
    pub latency_ms: Option<LatencyPercentiles>,
    /// The same for protective updates (they lower what the channel shows).
    pub latency_ms_protective: Option<LatencyPercentiles>,
    /// The same for the other updates.
    pub latency_ms_other: Option<LatencyPercentiles>,
    /// How long the channel's oldest unsent update has waited, in
    /// milliseconds (none: nothing waits).
    pub oldest_unsent_age_ms: Option<f64>,
}

impl SyncKpis {
    fn with(&self, channel: &ChannelId, f: impl FnOnce(&mut ChannelKpis)) {
        let mut map = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        f(map.entry(channel.clone()).or_default());
    }

    fn snapshot(&self) -> BTreeMap<ChannelId, ChannelKpis> {
        match self.inner.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn latency(&self, channel: &ChannelId, class: UpdateClass, ms: f64) {
        self.with(channel, |k| {
            match class {
                UpdateClass::Protective => k.protective.push(ms),
                UpdateClass::Other => k.other.push(ms),
            }
            k.items_acked += 1;
        });
    }

    /// Items `channel` acknowledged since start.
    fn items_acked(&self, channel: &ChannelId) -> u64 {
        let mut acked = 0;
        self.with(channel, |k| acked = k.items_acked);
        acked
    }

    /// How many latency samples each class of `channel` holds: a mark for
    /// [`SyncKpis::samples_since`].
    pub fn sample_counts(&self, channel: &ChannelId) -> [usize; 2] {
        [UpdateClass::Protective, UpdateClass::Other].map(|c| self.class_samples(channel, c).len())
    }

    /// The latency samples (ms) of both classes of `channel` recorded after
    /// `mark` (from [`SyncKpis::sample_counts`]; while fewer than
    /// `LATENCY_SAMPLES_MAX` a class has been recorded).
    pub fn samples_since(&self, channel: &ChannelId, mark: [usize; 2]) -> Vec<f64> {
        [UpdateClass::Protective, UpdateClass::Other]
            .into_iter()
            .zip(mark)
            .flat_map(|(class, from)| {
                let samples = self.class_samples(channel, class);
                samples[from.min(samples.len())..].to_vec()
            })
            .collect()
    }

    /// The latency samples (ms) kept for one class of `channel`'s updates.
    pub fn class_samples(&self, channel: &ChannelId, class: UpdateClass) -> Vec<f64> {
        let map = self.snapshot();
        map.get(channel)
            .map(|k| match class {
                UpdateClass::Protective => k.protective.ms.clone(),
                UpdateClass::Other => k.other.ms.clone(),
            })
            .unwrap_or_default()
    }

    /// Every channel's figures (without outbox ages).
    pub fn figures(&self) -> Vec<ChannelFigures> {
        self.figures_with(&[], Utc::now())
    }

    /// Every channel's figures, with the age at `now` of each channel's
    /// oldest unsent update (`oldest`: from `outbox_oldest_unsent`).
    pub fn figures_with(
        &self,
        oldest: &[(ChannelId, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Vec<ChannelFigures> {
        let mut map = self.snapshot();
        for (channel, _) in oldest {
            map.entry(channel.clone()).or_default();
        }
        map.into_iter()
            .map(|(channel, k)| {
                let mut all = k.protective.clone();
                for ms in &k.other.ms {
                    all.ms.push(*ms);
                }
                let oldest_unsent_age_ms = oldest
                    .iter()
                    .find(|(c, _)| *c == channel)
                    .map(|(_, at)| ((now - *at).num_milliseconds().max(0)) as f64);
                ChannelFigures {
                    channel,
                    pushes: k.pushes,
                    items_acked: k.items_acked,
                    failures: k.failures,
                    corrections: k.corrections,
                    rate_limited: k.rate_limited,
                    dead_lettered: k.dead_lettered,
                    held_by_budget: k.held_by_budget,
                    latency_ms: all.percentiles(),
                    latency_ms_protective: k.protective.percentiles(),
                    latency_ms_other: k.other.percentiles(),
                    oldest_unsent_age_ms,
                }
            })
            .collect()
    }

    /// The figures in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        self.render_with(&[], Utc::now(), out)
    }

    /// The figures in Prometheus text format, with outbox ages.
    pub fn render_with(
        &self,
        oldest: &[(ChannelId, DateTime<Utc>)],
        now: DateTime<Utc>,
        out: &mut String,
    ) {
        use std::fmt::Write;
        let figures = self.figures_with(oldest, now);
        let _ = writeln!(
            out,
            "# HELP stockd_sync_latency_ms Oldest unacknowledged cause to channel acknowledged, in milliseconds: all updates, and by class (protective: lowers what the channel shows).\n# TYPE stockd_sync_latency_ms summary"
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
            for (class, latency) in [
                ("protective", f.latency_ms_protective),
                ("other", f.latency_ms_other),
            ] {
                let Some(l) = latency else { continue };
                for (q, v) in [("0.5", l.p50), ("0.95", l.p95), ("0.99", l.p99)] {
                    let _ = writeln!(
                        out,
                        "stockd_sync_latency_ms{{channel=\"{}\",class=\"{class}\",quantile=\"{q}\"}} {v}",
                        f.channel
                    );
                }
                let _ = writeln!(
                    out,
                    "stockd_sync_latency_ms_count{{channel=\"{}\",class=\"{class}\"}} {}",
                    f.channel, l.samples
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP stockd_outbox_oldest_unsent_age_ms Age of the channel's oldest unsent update, in milliseconds (0: none).\n# TYPE stockd_outbox_oldest_unsent_age_ms gauge"
        );
        for f in &figures {
            let _ = writeln!(
                out,
                "stockd_outbox_oldest_unsent_age_ms{{channel=\"{}\"}} {}",
                f.channel,
                f.oldest_unsent_age_ms.unwrap_or(0.0)
            );
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
                "stockd_sync_corrections_total",
                "Compare-and-set conflicts corrected and sent again.",
                |f| f.corrections,
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

/// Where a dispatcher takes "now" and its backoff jitter from.
#[derive(Clone)]
pub struct DispatchOptions {
    /// The system clock in production; a simulated clock in `stockd simulate`.
    pub clock: stockd_store::Clock,
    /// `None`: jitter seeded from the system clock; `Some`: a repeatable
    /// sequence (each channel's worker its own, derived from this seed).
    pub jitter_seed: Option<u64>,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            clock: Arc::new(Utc::now),
            jitter_seed: None,
        }
    }
}

/// The running workers.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Whether this instance may push to and poll a channel now.
pub(super) struct Lease {
    /// Unix ms until which the lease is ours (with a safety margin).
    valid_until_ms: AtomicI64,
}

impl Lease {
    pub(super) fn held(&self, now: DateTime<Utc>) -> bool {
        now.timestamp_millis() < self.valid_until_ms.load(Ordering::Acquire)
    }

    fn set(&self, until_ms: i64) {
        self.valid_until_ms.store(until_ms, Ordering::Release);
    }
}

/// This instance's name in lease rows and in-flight marks.
fn instance_id() -> Arc<str> {
    let mut rng = Rng::seeded();
    format!("{}-{:016x}", std::process::id(), rng.next_u64()).into()
}

impl Dispatcher {
    /// Starts one worker per connection (and an order poller where the
    /// channel has no order push). On a shared PostgreSQL each channel has a
    /// lease: only its holder pushes and polls.
    pub fn start(
        store: Arc<dyn Store>,
        connections: Vec<Connection>,
        policy: RetryPolicy,
        kpis: Arc<SyncKpis>,
        index: Arc<crate::webhooks::ListingIndex>,
    ) -> Dispatcher {
        Dispatcher::start_with(
            store,
            connections,
            policy,
            kpis,
            index,
            DispatchOptions::default(),
        )
    }

    /// [`Dispatcher::start`] with a given clock and jitter seed.
    pub fn start_with(
        store: Arc<dyn Store>,
        connections: Vec<Connection>,
        policy: RetryPolicy,
        kpis: Arc<SyncKpis>,
        index: Arc<crate::webhooks::ListingIndex>,
        options: DispatchOptions,
    ) -> Dispatcher {
        let (stop, stopped) = watch::channel(false);
        let holder = instance_id();
        // SQLite is one process: the lease is always ours.
        let shared = store.backend_name() != "sqlite";
        let mut tasks = Vec::new();
        for (index_of_channel, connection) in connections.into_iter().enumerate() {
            let rng = match options.jitter_seed {
                Some(seed) => {
                    Rng::new(seed ^ (index_of_channel as u64 + 1).wrapping_mul(0x9E37_79B9))
                }
                None => Rng::seeded(),
            };
            let lease = Arc::new(Lease {
                valid_until_ms: AtomicI64::new(if shared { 0 } else { i64::MAX }),
            });
            tasks.push(tokio::spawn(keep_lease(
                store.clone(),
                connection.channel.clone(),
                holder.clone(),
                shared,
                lease.clone(),
                stopped.clone(),
            )));
            if connection.connector.polls_orders() {
                tasks.push(tokio::spawn(poll_orders(
                    store.clone(),
                    connection.clone(),
                    index.clone(),
                    holder.clone(),
                    lease.clone(),
                    stopped.clone(),
                )));
            }
            let pusher = Arc::new(Pusher {
                store: store.clone(),
                channel: connection.channel,
                connector: connection.connector,
                policy,
                kpis: kpis.clone(),
                rng: Mutex::new(rng),
                clock: options.clock.clone(),
                wakes: Mutex::new(Default::default()),
            });
            if pusher.connector.tracks_acknowledgements() {
                tasks.push(tokio::spawn(super::tracker::run(
                    pusher.clone(),
                    lease.clone(),
                    stopped.clone(),
                )));
            }
            let worker = Worker {
                pusher,
                holder: holder.clone(),
                shared,
                lease,
                budget_per_day: None,
                rules_read_at: None,
                running: JoinSet::new(),
                running_fast: 0,
                running_bulk: 0,
                running_spare: false,
                revived: None,
            };
            tasks.push(tokio::spawn(worker.run(stopped.clone())));
        }
        Dispatcher { stop, tasks }
    }

    /// Stops every worker at once, as a crash of the process would: pushes
    /// under way are dropped wherever they are (their rows stay marked in
    /// flight until the timeout, or the tracker's expiry).
    pub fn kill(self) {
        for task in self.tasks {
            task.abort();
        }
    }

    /// Stops the workers after their pushes under way resolve.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Takes and renews the channel's lease. A new holder first makes due what
/// another instance left in flight (that instance is gone: its lease ran
/// out). On SQLite only that first step runs (a previous process's marks).
async fn keep_lease(
    store: Arc<dyn Store>,
    channel: ChannelId,
    holder: Arc<str>,
    shared: bool,
    lease: Arc<Lease>,
    mut stopped: watch::Receiver<bool>,
) {
    if !shared {
        if let Err(e) = store.outbox_release_in_flight(&channel, &holder).await {
            tracing::warn!(channel = %channel, error = %e, "releasing earlier in-flight marks failed");
        }
        return;
    }
    loop {
        if *stopped.borrow() {
            break;
        }
        let now = Utc::now();
        match store
            .channel_lease(&channel, &holder, now, later(now, LEASE_TTL))
            .await
        {
            Ok(true) => {
                if !lease.held(now) {
                    match store.outbox_release_in_flight(&channel, &holder).await {
                        Ok(released) => tracing::info!(channel = %channel, holder = %holder,
                            released, "took the channel's lease"),
                        Err(e) => {
                            tracing::warn!(channel = %channel, error = %e,
                                "releasing another instance's in-flight marks failed");
                            // Not ours until that worked: try again.
                            tokio::select! {
                                _ = tokio::time::sleep(LEASE_RENEW) => {}
                                _ = stopped.changed() => {}
                            }
                            continue;
                        }
                    }
                }
                lease.set(later(now, LEASE_TTL - LEASE_MARGIN).timestamp_millis());
            }
            Ok(false) => {
                if lease.held(now) {
                    tracing::warn!(channel = %channel, "lost the channel's lease");
                }
                lease.set(0);
            }
            // Kept until it runs out on its own.
            Err(e) => tracing::warn!(channel = %channel, error = %e, "renewing the lease failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Polls a channel without order push (bol, Amazon) and applies what it
/// reports, as webhooks are applied. Only the lease holder polls; the cursor
/// lives in the database, so a takeover or restart resumes where the last
/// holder stopped (re-reading an order is harmless: changes are idempotent
/// by their dedup key).
async fn poll_orders(
    store: Arc<dyn Store>,
    connection: Connection,
    index: Arc<crate::webhooks::ListingIndex>,
    holder: Arc<str>,
    lease: Arc<Lease>,
    mut stopped: watch::Receiver<bool>,
) {
    let channel = connection.channel;
    let mut cursor: Option<Option<String>> = None;
    loop {
        if *stopped.borrow() {
            break;
        }
        if !lease.held(Utc::now()) {
            // Read again from the database when the lease is ours again.
            cursor = None;
            tokio::select! {
                _ = tokio::time::sleep(LEASE_WAIT) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        let current = match &cursor {
            Some(c) => c.clone(),
            None => match store.poll_cursor(&channel).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "reading the poll cursor failed");
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_WAIT) => {}
                        _ = stopped.changed() => {}
                    }
                    continue;
                }
            },
        };
        let wait = match connection.connector.poll_orders(current.as_deref()).await {
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
                    if poll.cursor != current {
                        if let Err(e) = store
                            .set_poll_cursor(&channel, &holder, poll.cursor.as_deref())
                            .await
                        {
                            tracing::warn!(channel = %channel, error = %e,
                                "storing the poll cursor failed");
                        }
                    }
                    cursor = Some(poll.cursor);
                } else {
                    cursor = Some(current);
                }
                poll.next_poll_after
            }
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "order poll failed");
                cursor = Some(current);
                e.retry_after.unwrap_or(Duration::from_secs(30))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// One channel's dispatcher loop: each round reads due rows (protective
/// first), starts pushes in free slots and goes on while they resolve.
struct Worker {
    pusher: Arc<Pusher>,
    holder: Arc<str>,
    shared: bool,
    lease: Arc<Lease>,
    budget_per_day: Option<u32>,
    rules_read_at: Option<tokio::time::Instant>,
    running: JoinSet<Lane>,
    running_fast: usize,
    running_bulk: usize,
    /// A spare push (see `lanes`) is under way.
    running_spare: bool,
    /// When transient dead letters were last revived, the channel's
    /// acknowledged items then, and the wait for the next probe.
    revived: Option<(DateTime<Utc>, u64, Duration)>,
}

/// Talks to one channel and records what it said: shared by a worker's
/// pushes under way and the channel's tracker.
pub(super) struct Pusher {
    pub(super) store: Arc<dyn Store>,
    pub(super) channel: ChannelId,
    pub(super) connector: Arc<dyn Connector>,
    policy: RetryPolicy,
    kpis: Arc<SyncKpis>,
    rng: Mutex<Rng>,
    clock: stockd_store::Clock,
    /// When rows this channel deferred fall due (unix ms, soonest first):
    /// an idle worker wakes then.
    wakes: Mutex<std::collections::BinaryHeap<std::cmp::Reverse<i64>>>,
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

pub(super) fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn class_of(row: &OutboxRow) -> UpdateClass {
    if row.protective {
        UpdateClass::Protective
    } else {
        UpdateClass::Other
    }
}

impl Worker {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let channel = self.pusher.channel.clone();
        tracing::info!(channel = %channel, kind = self.pusher.connector.kind(), "sync worker started");
        let mut commits = self.pusher.store.commits();
        let idle_poll = if self.shared {
            IDLE_POLL
        } else {
            IDLE_POLL_ALONE
        };
        loop {
            if *stopped.borrow() {
                break;
            }
            while let Some(done) = self.running.try_join_next() {
                self.finished(done);
            }
            // Commits from here on are news to the next wait.
            commits.mark_seen();
            let started = if self.lease.held(self.pusher.now()) {
                match self.round().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(channel = %channel, error = %e, "sync round failed");
                        0
                    }
                }
            } else {
                0
            };
            if started == 0 {
                let wait = self
                    .pusher
                    .next_wake()
                    .map_or(idle_poll, |w| w.min(idle_poll));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    () = commits.changed() => {}
                    Some(done) = self.running.join_next(), if !self.running.is_empty() => {
                        self.finished(done);
                    }
                    _ = stopped.changed() => {}
                }
            }
        }
        // Pushes under way resolve and are recorded before the lease goes.
        while let Some(done) = self.running.join_next().await {
            self.finished(done);
        }
        if self.shared {
            if let Err(e) = self
                .pusher
                .store
                .channel_lease_release(&channel, &self.holder)
                .await
            {
                tracing::warn!(channel = %channel, error = %e, "releasing the lease failed");
            }
        }
        tracing::info!(channel = %channel, "sync worker stopped");
    }

    fn finished(&mut self, done: Result<Lane, tokio::task::JoinError>) {
        match done {
            Ok(Lane::Fast) => self.running_fast -= 1,
            Ok(Lane::Bulk) => self.running_bulk -= 1,
            Ok(Lane::Spare) => self.running_spare = false,
            Err(e) => {
                // A push task panicked: its lane is unknown; recount from
                // what is still running (its rows wait for the in-flight
                // timeout or the next start).
                tracing::error!(channel = %self.pusher.channel, error = %e, "push task failed");
                self.running_fast = self.running.len().min(self.running_fast);
                self.running_bulk = self.running.len().saturating_sub(self.running_fast);
                self.running_spare = false;
            }
        }
    }

    /// A listing cannot stay parked by an outage while the channel takes
    /// other updates: once it acknowledges pushes again, listings parked by
    /// a transient failure are sent again (from their latest state).
    async fn revive_transient(&mut self) -> Result<(), StoreError> {
        let now = self.pusher.now();
        let acked = self.pusher.kpis.items_acked(&self.pusher.channel);
        let revive_after = self.pusher.policy.revive_after;
        let first_probe = (revive_after * 2).min(REVIVE_PROBE);
        // `Some(wait)`: a probe of a silent channel, due after `wait`.
        let silent_probe = match self.revived {
            None => None,
            Some((at, acked_then, probe)) => {
                let since = to_std(now - at);
                if acked > acked_then && since >= revive_after {
                    None
                } else if since >= probe {
                    Some(probe)
                } else {
                    return Ok(());
                }
            }
        };
        let revived = self
            .pusher
            .store
            .dead_letters_revive(&self.pusher.channel, now)
            .await?;
        // Listings still parked on a silent channel: it may be down still,
        // so the next probe waits longer.
        let next_probe = match silent_probe {
            Some(probe) if revived > 0 => (probe * 2).min(REVIVE_PROBE),
            _ => first_probe,
        };
        self.revived = Some((now, acked, next_probe));
        if revived > 0 {
            tracing::info!(channel = %self.pusher.channel, revived,
                "listings parked by a transient failure are sent again");
        }
        Ok(())
    }

    async fn refresh_rules(&mut self) -> Result<(), StoreError> {
        let due = self
            .rules_read_at
            .is_none_or(|at| at.elapsed() >= RULES_REFRESH);
        if !due {
            return Ok(());
        }
        self.rules_read_at = Some(tokio::time::Instant::now());
        let store = &*self.pusher.store;
        let setup = crate::availability::Setup::load(store).await?;
        let rules = crate::availability::active_rules(store, &setup).await?;
        self.budget_per_day = rules
            .rules
            .pushes_per_day(&self.pusher.channel)
            .or_else(|| self.pusher.connector.default_pushes_per_day());
        Ok(())
    }

    /// One round: settles what needs no push, starts pushes in the free
    /// slots (protective updates in small fast-path pushes of their own) and
    /// returns how many listings it handled.
    async fn round(&mut self) -> Result<usize, StoreError> {
        self.refresh_rules().await?;
        self.revive_transient().await?;
        let connector = self.pusher.connector.clone();
        let slots = connector.pushes_in_flight().max(1);
        let free_fast = slots.saturating_sub(self.running_fast);
        let free_bulk = slots.saturating_sub(self.running_bulk);
        if free_fast == 0 && free_bulk == 0 {
            return Ok(0);
        }
        let fast = connector.fast_batch().max(1);
        let bulk = connector.max_batch().max(1);
        let wanted = fast
            .saturating_mul(free_fast)
            .saturating_add(bulk.saturating_mul(free_bulk));
        let limit = u32::try_from(wanted.clamp(1, ROUND_ROWS_MAX)).unwrap_or(u32::MAX);
        let now = self.pusher.now();
        let due = self
            .pusher
            .store
            .outbox_due(&self.pusher.channel, now, limit)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let carries_quantity = connector.carries_quantity();
        let mut updates = Vec::new();
        let mut protective: Vec<OutboxRow> = Vec::new();
        let mut other: Vec<OutboxRow> = Vec::new();
        for mut row in due {
            row.protective = lanes::protective_here(
                row.protective,
                carries_quantity,
                row.desired.availability,
                row.pushed.as_ref().map(|p| p.availability),
            );
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
                    self.pusher
                        .kpis
                        .with(&self.pusher.channel, |k| k.held_by_budget += 1);
                    updates.push(OutboxUpdate::Deferred {
                        channel: row.channel.clone(),
                        sku: row.sku.clone(),
                        until,
                        note: Some(HELD_BY_BUDGET.into()),
                    });
                }
                PushDecision::Unchanged | PushDecision::Push { .. } => {
                    if row.protective {
                        protective.push(row);
                    } else {
                        other.push(row);
                    }
                }
            }
        }
        // Protective updates take the fast lane; the rest go in bulk, but
        // not on the fast path while protective updates need it (`lanes`).
        let room = LaneRoom {
            fast_batch: fast,
            bulk_batch: bulk,
            free_fast,
            free_bulk,
            fast_running: self.running_fast,
            spare_running: self.running_spare,
            bulk_takes_protective: connector.bulk_takes_protective(),
            bulk_on_fast_path_up_to: connector.bulk_on_fast_path_up_to(),
        };
        let pushes = lanes::plan(protective, other, room, OutboxRow::latency_start, now);
        let mut handled = updates.len();
        // The in-flight marks commit before anything is sent: no other
        // round (of this or another instance) takes these rows meanwhile.
        let until = later(now, IN_FLIGHT_TIMEOUT);
        for (_, rows) in &pushes {
            handled += rows.len();
            updates.extend(rows.iter().map(|row| OutboxUpdate::InFlight {
                channel: row.channel.clone(),
                sku: row.sku.clone(),
                holder: self.holder.to_string(),
                until,
            }));
        }
        // Protective rows are counted as taken before their in-flight marks
        // commit: a reader (reconciliation yielding to them) always sees
        // them either due in the outbox or counted here, never neither.
        let kpis = &self.pusher.kpis;
        let channel = &self.pusher.channel;
        let taken: usize = pushes
            .iter()
            .map(|(_, rows)| rows.iter().filter(|r| r.protective).count())
            .sum();
        kpis.protective_taken(channel, taken, true);
        self.pusher.note_wakes(&updates);
        if let Err(e) = self.pusher.store.outbox_record(updates).await {
            kpis.protective_taken(channel, taken, false);
            return Err(e);
        }
        for (lane, rows) in pushes {
            match lane {
                Lane::Fast => self.running_fast += 1,
                Lane::Bulk => self.running_bulk += 1,
                Lane::Spare => self.running_spare = true,
            }
            let pusher = self.pusher.clone();
            let protective = rows.iter().filter(|r| r.protective).count();
            self.running.spawn(async move {
                pusher.push_and_record(rows, lane).await;
                pusher
                    .kpis
                    .protective_taken(&pusher.channel, protective, false);
                lane
            });
        }
        Ok(handled)
    }
}

impl Pusher {
    /// "Now" on this dispatcher's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Pushes one connector batch and records the outcome (the one place
    /// push outcomes are recorded).
    async fn push_and_record(&self, rows: Vec<OutboxRow>, lane: Lane) {
        let updates = match self.push(&rows, lane).await {
            Ok(updates) => updates,
            Err(e) => {
                tracing::error!(channel = %self.channel, error = %e,
                    "preparing a push failed; its listings are due again");
                let now = self.now();
                rows.iter()
                    .map(|row| OutboxUpdate::Deferred {
                        channel: row.channel.clone(),
                        sku: row.sku.clone(),
                        until: later(now, STORE_RETRY),
                        note: None,
                    })
                    .collect()
            }
        };
        if self.record(updates).await {
            return;
        }
        tracing::error!(channel = %self.channel,
            "push outcomes not recorded; the listings are sent again after the in-flight timeout");
    }

    /// Pushes one connector batch; returns what to record. On a channel
    /// that acknowledges later the batch is only submitted: what it
    /// accepted is recorded with the channel's reference for the tracker.
    async fn push(&self, rows: &[OutboxRow], lane: Lane) -> Result<Vec<OutboxUpdate>, StoreError> {
        let skus: Vec<Sku> = rows.iter().map(|r| r.sku.clone()).collect();
        let listings = self.externals(&skus).await?;
        let mut updates = Vec::new();
        let mut items = Vec::new();
        let mut sent_rows = Vec::new();
        for row in rows {
            let Some(external) = listings.get(&row.sku) else {
                // The listing was removed: nothing to send; the row is settled.
                updates.push(acked(row, &row.desired, None, self.now(), false));
                continue;
            };
            items.push(push_item(row, external));
            sent_rows.push(row);
        }
        if items.is_empty() {
            return Ok(updates);
        }
        self.kpis.with(&self.channel, |k| k.pushes += 1);
        tracing::debug!(channel = %self.channel, lane = ?lane, items = items.len(),
            protective = sent_rows.iter().filter(|r| r.protective).count(), "push");
        // Spare pushes are bulk pushes the channel sends on its fast path.
        let bulk = lane != Lane::Fast;
        let submitted = if self.connector.tracks_acknowledgements() {
            self.connector.submit(&items, bulk).await
        } else {
            let pushed = if bulk {
                self.connector.push_bulk(&items).await
            } else {
                self.connector.push(&items).await
            };
            pushed.map(|outcomes| outcomes.into_iter().map(Submitted::Done).collect())
        };
        let submitted = match submitted {
            Ok(submitted) if submitted.len() == items.len() => submitted,
            Ok(submitted) => {
                let e = ChannelError::new(
                    ErrorClass::Retryable,
                    "connector_mismatch",
                    format!("{} results for {} items", submitted.len(), items.len()),
                );
                vec![Submitted::Done(ItemOutcome::Failed(e)); items.len()]
            }
            Err(e) => vec![Submitted::Done(ItemOutcome::Failed(e)); items.len()],
        };
        let now = self.now();
        let until = later(
            now,
            IN_FLIGHT_TIMEOUT.max(self.connector.track_timeout() * 2),
        );
        for ((row, answer), item) in sent_rows.into_iter().zip(submitted).zip(&items) {
            match answer {
                Submitted::Done(outcome) => {
                    self.outcome_updates(row, item, outcome, now, &mut updates)
                }
                Submitted::Accepted { reference } => {
                    tracing::debug!(channel = %self.channel, sku = %row.sku, gen = row.desired_gen,
                        reference = %reference, "accepted; acknowledged later");
                    updates.push(OutboxUpdate::Accepted {
                        channel: row.channel.clone(),
                        sku: row.sku.clone(),
                        accepted: Accepted {
                            reference,
                            sent: SentUpdate {
                                gen: row.desired_gen,
                                state: row.desired.clone(),
                                quantity: item.quantity,
                                channel_gen: row.channel_gen,
                                protective: row.protective,
                            },
                            at: now,
                        },
                        until,
                    });
                }
            }
        }
        Ok(updates)
    }

    /// The channel ids of the listings of `skus` on this channel.
    pub(super) async fn externals(
        &self,
        skus: &[Sku],
    ) -> Result<BTreeMap<Sku, stockd_channels::External>, StoreError> {
        Ok(self
            .store
            .listings_of(skus)
            .await?
            .into_iter()
            .filter(|l| l.channel == self.channel)
            .map(|l| (l.sku, l.external))
            .collect())
    }

    /// What to record for the channel's answer about one update (`row` as
    /// it was sent): latency and acknowledgement, or the failure's
    /// consequence; the attempt goes to the audit trail.
    pub(super) fn outcome_updates(
        &self,
        row: &OutboxRow,
        item: &PushItem,
        outcome: ItemOutcome,
        now: DateTime<Utc>,
        updates: &mut Vec<OutboxUpdate>,
    ) {
        let audit_outcome = self
            .kpis
            .audit
            .get()
            .cloned()
            .map(|sink| (sink, outcome.clone()));
        let updates_before = updates.len();
        tracing::debug!(channel = %self.channel, sku = %row.sku, gen = row.desired_gen,
            desired = row.desired.quantity, believed = ?row.channel_quantity,
            protective = row.protective, outcome = ?outcome, "push outcome");
        match outcome {
            ItemOutcome::Applied { quantity } => {
                let ms =
                    (now - row.latency_start()).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                self.kpis.latency(&self.channel, class_of(row), ms.max(0.0));
                updates.push(acked(row, &row.desired, Some(quantity), now, true));
            }
            ItemOutcome::Failed(error) => updates.extend(self.failed(row, error, now)),
        }
        // The audit trail (written off this path, see `audit`).
        if let Some((sink, outcome)) = audit_outcome {
            let dead = updates[updates_before..]
                .iter()
                .any(|u| matches!(u, OutboxUpdate::Dead { .. }));
            sink.record(crate::outbound::audit::attempt(
                row, item, &outcome, now, dead,
            ));
        }
    }

    /// Remembers when the rows `updates` defer fall due.
    fn note_wakes(&self, updates: &[OutboxUpdate]) {
        let mut wakes = lock(&self.wakes);
        for update in updates {
            let at = match update {
                OutboxUpdate::Failed {
                    next_attempt_at, ..
                } => next_attempt_at,
                OutboxUpdate::Deferred { until, .. } => until,
                _ => continue,
            };
            wakes.push(std::cmp::Reverse(at.timestamp_millis()));
        }
    }

    /// How long until the soonest deferred row falls due (zero when one is
    /// due now; those due are forgotten: the next round takes them).
    fn next_wake(&self) -> Option<Duration> {
        let now_ms = self.now().timestamp_millis();
        let mut wakes = lock(&self.wakes);
        let mut due = false;
        while wakes.peek().is_some_and(|w| w.0 <= now_ms) {
            wakes.pop();
            due = true;
        }
        if due {
            return Some(Duration::ZERO);
        }
        wakes
            .peek()
            .map(|w| Duration::from_millis(u64::try_from(w.0 - now_ms).unwrap_or(0)))
    }

    /// Records `updates`, trying a few times.
    pub(super) async fn record(&self, updates: Vec<OutboxUpdate>) -> bool {
        self.note_wakes(&updates);
        for attempt in 1..=RECORD_ATTEMPTS {
            match self.store.outbox_record(updates.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, attempt,
                        "recording push outcomes failed");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
        false
    }

    fn jitter(&self) -> f64 {
        match self.rng.lock() {
            Ok(mut rng) => rng.next_unit(),
            Err(p) => p.into_inner().next_unit(),
        }
    }

    pub(super) fn failed(
        &self,
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
                    .unwrap_or_else(|| self.policy.backoff(1, self.jitter(), None));
                vec![OutboxUpdate::Deferred {
                    channel,
                    sku,
                    until: later(now, wait),
                    note: Some(format!("rate limited: {}", error.code)),
                }]
            }
            ErrorClass::Stale => {
                // A compare-and-set conflict: the channel's count moved (it
                // sold). A correction, not a failed attempt: adopt its count
                // and send again at once.
                self.kpis.with(&self.channel, |k| k.corrections += 1);
                vec![
                    OutboxUpdate::ChannelQuantity {
                        channel: channel.clone(),
                        sku: sku.clone(),
                        quantity: error.current,
                    },
                    OutboxUpdate::Deferred {
                        channel,
                        sku,
                        until: now,
                        note: Some(format!("corrected: {}", error.code)),
                    },
                ]
            }
            ErrorClass::Retryable => self.retry_or_dead(row, error, now),
            ErrorClass::Permanent => {
                self.kpis.with(&self.channel, |k| k.dead_lettered += 1);
                vec![dead(row, &error, attempts_before(row) + 1, now)]
            }
        }
    }

    fn retry_or_dead(
        &self,
        row: &OutboxRow,
        error: ChannelError,
        now: DateTime<Utc>,
    ) -> Vec<OutboxUpdate> {
        self.kpis.with(&self.channel, |k| k.failures += 1);
        let attempts = attempts_before(row) + 1;
        // The age of the state being sent: a dead letter belongs to a state.
        let since = row.dirty_since.unwrap_or(now).max(row.caused_at);
        let age = to_std(now - since);
        match self
            .policy
            .decide(attempts, age, self.jitter(), error.retry_after)
        {
            RetryDecision::RetryAfter(wait) => vec![OutboxUpdate::Failed {
                channel: row.channel.clone(),
                sku: row.sku.clone(),
                attempts,
                next_attempt_at: later(now, wait),
                error: format!("{}: {}", error.code, error.message),
            }],
            RetryDecision::DeadLetter => {
                self.kpis.with(&self.channel, |k| k.dead_lettered += 1);
                vec![dead(row, &error, attempts, now)]
            }
        }
    }
}

/// The update of `row` as the connector takes it.
pub(super) fn push_item(row: &OutboxRow, external: &stockd_channels::External) -> PushItem {
    PushItem {
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
    }
}

/// Failed attempts of the state being sent: a newer state than a parked one
/// starts afresh.
fn attempts_before(row: &OutboxRow) -> u32 {
    if row.supersedes_dead_letter() {
        0
    } else {
        row.attempts
    }
}

pub(super) fn acked(
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
            superseded: false,
            transient: error.class == ErrorClass::Retryable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_since_a_mark_are_those_recorded_after_it_in_each_class() {
        let kpis = SyncKpis::default();
        let channel = ChannelId::parse("bol-main".to_string()).unwrap();
        kpis.latency(&channel, UpdateClass::Other, 200_000.0);
        kpis.latency(&channel, UpdateClass::Other, 190_000.0);
        let mark = kpis.sample_counts(&channel);
        assert_eq!(mark, [0, 2]);
        kpis.latency(&channel, UpdateClass::Protective, 900.0);
        kpis.latency(&channel, UpdateClass::Other, 1_500.0);
        let mut since = kpis.samples_since(&channel, mark);
        since.sort_by(f64::total_cmp);
        assert_eq!(since, vec![900.0, 1_500.0]);
    }
}
