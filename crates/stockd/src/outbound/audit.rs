//! The push audit trail and the persisted daily figures, written off the
//! dispatcher's path: the dispatcher hands each push attempt to an
//! unbounded queue ([`AuditSink`]), and one background task writes them in
//! batches (attempt rows plus per-channel, per-day sums and latency
//! buckets), follows the ledger for order lines (exactly once, with a
//! stored cursor), and prunes attempts past the retention in small batches
//! so that neither the event writer nor the dispatcher waits for it.

use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::{ItemOutcome, PushItem};
use stockd_core::ChannelId;
use stockd_store::kpis::{
    latency_bucket, DayCounts, PushAttempt, LATENCY_BUCKETS_MS, STOCK_CANCEL_REASONS,
};
use stockd_store::outbox::OutboxRow;
use stockd_store::{LedgerQuery, Store};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Attempts written per transaction at most.
const BATCH_MAX: usize = 5_000;
/// Ledger entries read per follow step.
const LEDGER_PAGE: u32 = 5_000;
/// How often the ledger is followed and old attempts pruned.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Attempts deleted per prune statement.
const PRUNE_BATCH: u32 = 1_000;

/// Where the dispatcher hands its push attempts.
#[derive(Clone)]
pub struct AuditSink(mpsc::UnboundedSender<PushAttempt>);

impl AuditSink {
    pub fn record(&self, attempt: PushAttempt) {
        // The task stops only at shutdown; a late attempt is then dropped.
        let _ = self.0.send(attempt);
    }
}

/// One push attempt as the audit trail keeps it.
pub fn attempt(
    row: &OutboxRow,
    item: &PushItem,
    outcome: &ItemOutcome,
    at: DateTime<Utc>,
    dead_lettered: bool,
) -> PushAttempt {
    let sent = serde_json::json!({
        "quantity": item.quantity,
        "availability": item.availability,
        "eta": item.eta,
        "believed": item.believed,
        "reference": item.reference,
    });
    let (outcome_text, channel_quantity, code, message, latency_ms) = match outcome {
        ItemOutcome::Applied { quantity } => {
            let ms = (at - row.caused_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            (
                "applied".to_string(),
                Some(*quantity),
                None,
                None,
                Some(ms.max(0.0)),
            )
        }
        ItemOutcome::Failed(e) => (
            serde_json::to_value(e.class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "failed".into()),
            e.current,
            Some(e.code.clone()),
            Some(e.message.clone()),
            None,
        ),
    };
    PushAttempt {
        id: 0,
        at,
        channel: row.channel.clone(),
        sku: row.sku.clone(),
        desired_gen: row.desired_gen,
        rules_version: row.rules_version,
        caused_seq: row.caused_seq,
        sent,
        outcome: outcome_text,
        channel_quantity,
        code,
        message,
        latency_ms,
        dead_lettered,
    }
}

/// The background writer.
pub struct AuditTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AuditTask {
    /// Starts the writer; attempts go through the returned sink.
    pub fn start(store: Arc<dyn Store>, retention: Duration) -> (AuditSink, AuditTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, rx, stopped, retention));
        (AuditSink(tx), AuditTask { stop, task })
    }

    /// Writes what is queued, then stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

fn empty_counts() -> DayCounts {
    DayCounts {
        latency: vec![0; LATENCY_BUCKETS_MS.len() + 1],
        ..DayCounts::default()
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<PushAttempt>,
    mut stopped: watch::Receiver<bool>,
    retention: Duration,
) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut follow = tokio::time::interval(FOLLOW_EVERY);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = *stopped.borrow();
        let mut batch = Vec::new();
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write_attempts(&*store, batch).await;
            continue;
        }
        follow_ledger(&*store).await;
        if stopping {
            break;
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            prune(&*store, retention).await;
        }
        tokio::select! {
            Some(a) = rx.recv() => {
                write_attempts(&*store, vec![a]).await;
            }
            _ = follow.tick() => {}
            _ = stopped.changed() => {}
        }
    }
}

async fn write_attempts(store: &dyn Store, attempts: Vec<PushAttempt>) {
    let mut days: BTreeMap<(ChannelId, NaiveDate), DayCounts> = BTreeMap::new();
    for a in &attempts {
        let c = days
            .entry((a.channel.clone(), day_of(a.at)))
            .or_insert_with(empty_counts);
        c.pushes += 1;
        match a.latency_ms {
            Some(ms) => c.latency[latency_bucket(ms)] += 1,
            None if a.outcome != "rate_limited" => c.failures += 1,
            None => {}
        }
        if a.dead_lettered {
            c.dead_letters += 1;
        }
    }
    let days = days.into_iter().map(|((c, d), n)| (c, d, n)).collect();
    if let Err(e) = store.kpi_record(attempts, days).await {
        tracing::error!(error = %e, "push audit records could not be written");
    }
}

/// Counts order lines of new ledger entries per channel and day.
async fn follow_ledger(store: &dyn Store) {
    loop {
        let Ok(from) = store.kpi_ledger_cursor().await else {
            return;
        };
        let rows = match store
            .ledger(&LedgerQuery {
                sku: None,
                after_seq: from,
                limit: LEDGER_PAGE,
            })
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the ledger for daily figures");
                return;
            }
        };
        let Some(to) = rows.last().map(|r| r.seq) else {
            return;
        };
        let mut days: BTreeMap<(ChannelId, NaiveDate), DayCounts> = BTreeMap::new();
        for row in &rows {
            let stock_cancel = row.kind == "cancel"
                && row.event["reason"]
                    .as_str()
                    .is_some_and(|r| STOCK_CANCEL_REASONS.contains(&r));
            if row.kind != "order" && !stock_cancel {
                continue;
            }
            let Some(channel) = row.event["channel"]
                .as_str()
                .and_then(|c| ChannelId::parse(c).ok())
            else {
                continue;
            };
            // A cancel without lines is the whole order: counted as one line.
            let lines = row.event["lines"].as_array().map_or(1, Vec::len) as u64;
            let counts = days
                .entry((channel, day_of(row.received_at)))
                .or_insert_with(empty_counts);
            if stock_cancel {
                counts.stock_cancels += lines;
            } else {
                counts.order_lines += lines;
            }
        }
        let days = days.into_iter().map(|((c, d), n)| (c, d, n)).collect();
        match store.kpi_follow_ledger(from, to, days).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot record daily order lines");
                return;
            }
        }
        if rows.len() < LEDGER_PAGE as usize {
            return;
        }
    }
}

async fn prune(store: &dyn Store, retention: Duration) {
    let before =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    loop {
        match store.push_attempts_prune(before, PRUNE_BATCH).await {
            Ok(n) if n >= u64::from(PRUNE_BATCH) => tokio::task::yield_now().await,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "pruning the push audit trail failed");
                return;
            }
        }
    }
}
