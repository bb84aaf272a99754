//! The NATS JetStream consumer: a durable pull consumer with explicit acks,
//! shared by every stockd instance (the server hands each message to one of
//! them at a time).
//!
//! Messages that arrive together are applied together: each message is one
//! store request (atomic on its own; a bad message cannot spoil its
//! neighbours), and all of them are queued on the writer at once, so they
//! commit in one group transaction. A message is acknowledged only after its
//! commit; if stockd dies in between, the redelivery is recognised by its
//! event keys and acknowledged as a duplicate. A message that can never
//! apply is kept in the store (`GET /v1/inbound/rejected`) and then
//! terminated; a storage failure naks the message with a growing delay.

use super::{NatsAuth, NatsInboundSettings};
use crate::input;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{self, AckKind};
use futures_util::{FutureExt, StreamExt};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockd_core::{EventResult, EventStatus, RequestError};
use stockd_store::inbound::RejectedMessage;
use stockd_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Upper bounds of the acknowledgement latency buckets, in seconds.
const ACK_BUCKETS_SECONDS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// First and largest delay before a message that met a storage failure is redelivered.
const NAK_DELAY_FIRST: Duration = Duration::from_millis(250);
const NAK_DELAY_MAX: Duration = Duration::from_secs(30);
/// First and largest pause before reconnecting after the bus failed.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// Batches being applied or acknowledged at once. One: a second batch in
/// flight (parsed while the first commits) showed no gain within the noise
/// of the inbound bench on two loaded cores, and it lets the rejected
/// messages of two batches be kept out of stream order.
const BATCHES_IN_FLIGHT: usize = 1;
/// Largest body kept with a rejected message.
const REJECTED_BODY_MAX: usize = 256 * 1024;
/// Test hook: with `STOCKD_FAILPOINT=nats_after_commit` in its environment
/// at start, stockd aborts right after a batch commits and before its acks
/// — a kill -9 at the worst moment, for the crash test of the consumer.
const FAILPOINT_VAR: &str = "STOCKD_FAILPOINT";
const FAILPOINT_AFTER_COMMIT: &str = "nats_after_commit";

/// Counters of the consumer, for `/metrics`.
#[derive(Default)]
pub struct InboundKpis {
    pub messages_in: AtomicU64,
    /// Messages whose events committed now (at least one applied or quarantined).
    pub messages_applied: AtomicU64,
    /// Messages all of whose events had applied before (redeliveries).
    pub messages_duplicate: AtomicU64,
    /// Messages terminated and kept as rejected.
    pub messages_rejected: AtomicU64,
    /// Messages nak'ed because storage failed.
    pub messages_retried: AtomicU64,
    pub events_applied: AtomicU64,
    /// Messages the server still holds for the consumer (its lag).
    pub consumer_pending: AtomicU64,
    ack_latency: Mutex<AckLatency>,
}

#[derive(Default)]
struct AckLatency {
    buckets: [u64; ACK_BUCKETS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl InboundKpis {
    fn observe_ack(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let mut h = self.ack_latency.lock().unwrap_or_else(|e| e.into_inner());
        let at = ACK_BUCKETS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(ACK_BUCKETS_SECONDS.len());
        h.buckets[at] += 1;
        h.sum_seconds += seconds;
        h.count += 1;
    }

    /// Appends the inbound series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        let _ = writeln!(
            out,
            "# HELP stockd_inbound_messages_total Bus messages received, by outcome."
        );
        let _ = writeln!(out, "# TYPE stockd_inbound_messages_total counter");
        for (outcome, value) in [
            ("received", &self.messages_in),
            ("applied", &self.messages_applied),
            ("duplicate", &self.messages_duplicate),
            ("rejected", &self.messages_rejected),
            ("retried", &self.messages_retried),
        ] {
            let _ = writeln!(
                out,
                "stockd_inbound_messages_total{{outcome=\"{outcome}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        counter(
            out,
            "stockd_inbound_events_applied_total",
            "Events applied from bus messages.",
            &self.events_applied,
        );
        let _ = writeln!(
            out,
            "# HELP stockd_inbound_consumer_pending Messages the bus still holds for stockd's consumer."
        );
        let _ = writeln!(out, "# TYPE stockd_inbound_consumer_pending gauge");
        let _ = writeln!(
            out,
            "stockd_inbound_consumer_pending {}",
            self.consumer_pending.load(Ordering::Relaxed)
        );
        let h = self.ack_latency.lock().unwrap_or_else(|e| e.into_inner());
        let name = "stockd_inbound_ack_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From receipt of a message to its acknowledgement."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in ACK_BUCKETS_SECONDS.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += h.buckets[ACK_BUCKETS_SECONDS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
}

/// What became of one message.
#[derive(Debug)]
pub enum Verdict {
    /// Committed (applied, quarantined or recognised as a duplicate): ack.
    Committed(Vec<EventResult>),
    /// Can never apply; kept as rejected message `id`: terminate.
    Rejected { id: i64, code: String },
    /// Storage failed; nothing applied: nak and retry later.
    Retry(String),
}

/// Why a message can never apply: a stable code and a readable reason.
struct Refusal {
    code: String,
    reason: String,
}

fn refusal(error: crate::error::ApiError) -> Refusal {
    let code = error.code().to_string();
    let message = error.to_string();
    let details = error.into_details();
    let reason = if details.is_empty() {
        message
    } else {
        format!(
            "{message}; details: {}",
            serde_json::to_string(&details).unwrap_or_default()
        )
    };
    Refusal { code, reason }
}

/// The events of a message body, judged exactly as a `POST /v1/events` body.
fn parse(payload: &[u8]) -> Result<Vec<stockd_core::Submission>, Refusal> {
    let body: serde_json::Value = serde_json::from_slice(payload).map_err(|e| Refusal {
        code: "malformed_json".into(),
        reason: format!("the message body is not valid JSON: {e}"),
    })?;
    let events = input::parse_events(body).map_err(refusal)?;
    Ok(events.into_iter().map(stockd_store::submission).collect())
}

/// Applies messages received together: every parsable message is queued on
/// the writer at once (one group commit), each as its own atomic request.
/// Refused messages are kept as rejected. Nothing is acknowledged here.
pub async fn apply_messages(store: &dyn Store, messages: &[jetstream::Message]) -> Vec<Verdict> {
    // Parsed submissions move into their requests; a refusal stays behind.
    let mut refusals: Vec<Option<Refusal>> = Vec::with_capacity(messages.len());
    let mut submits = Vec::with_capacity(messages.len());
    for message in messages {
        match parse(&message.payload) {
            Ok(submissions) => {
                refusals.push(None);
                submits.push(store.submit(submissions));
            }
            Err(refused) => refusals.push(Some(refused)),
        }
    }
    let mut outcomes = futures_util::future::join_all(submits).await.into_iter();
    let mut verdicts = Vec::with_capacity(messages.len());
    for (message, refused) in messages.iter().zip(refusals) {
        let refused = match refused {
            Some(refused) => refused,
            None => match outcomes.next() {
                Some(Ok(Ok(results))) => {
                    verdicts.push(Verdict::Committed(results));
                    continue;
                }
                Some(Ok(Err(RequestError::KeyReused { index, key }))) => Refusal {
                    code: "idempotency_key_reused".into(),
                    reason: format!(
                        "event {index}: idempotency key {key} was used before for a different event; nothing was applied"
                    ),
                },
                Some(Ok(Err(RequestError::Rejected { index, error }))) => Refusal {
                    code: error.code().to_string(),
                    reason: format!("event {index} was refused: {error}; nothing was applied"),
                },
                Some(Err(e)) => {
                    verdicts.push(Verdict::Retry(e.to_string()));
                    continue;
                }
                None => {
                    verdicts.push(Verdict::Retry("message was not submitted".into()));
                    continue;
                }
            },
        };
        verdicts.push(keep_rejected(store, message, refused).await);
    }
    verdicts
}

async fn keep_rejected(
    store: &dyn Store,
    message: &jetstream::Message,
    refused: Refusal,
) -> Verdict {
    let (stream, stream_seq) = match message.info() {
        Ok(info) => (info.stream.to_string(), info.stream_sequence),
        Err(_) => (String::new(), 0),
    };
    let mut body = String::from_utf8_lossy(&message.payload).into_owned();
    if body.len() > REJECTED_BODY_MAX {
        let mut cut = REJECTED_BODY_MAX;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let kept = store
        .record_rejected(RejectedMessage {
            source: "nats".into(),
            stream,
            stream_seq,
            subject: message.subject.to_string(),
            code: refused.code.clone(),
            reason: refused.reason.clone(),
            body,
            received_at: chrono::Utc::now(),
        })
        .await;
    match kept {
        Ok(id) => {
            tracing::warn!(id, code = %refused.code, reason = %refused.reason, subject = %message.subject, "inbound message rejected");
            Verdict::Rejected {
                id,
                code: refused.code,
            }
        }
        // Not kept means not terminated: it comes back and is judged again.
        Err(e) => Verdict::Retry(format!("cannot keep the rejected message: {e}")),
    }
}

/// The delay before a message that met a storage failure is redelivered,
/// growing with its delivery count.
pub fn nak_delay(delivered: i64) -> Duration {
    let doublings = u32::try_from(delivered.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    NAK_DELAY_FIRST
        .saturating_mul(1 << doublings)
        .min(NAK_DELAY_MAX)
}

/// Acknowledges messages according to their verdicts; returns the longest
/// nak delay (zero when none was nak'ed).
async fn settle(
    client: &async_nats::Client,
    messages: Vec<jetstream::Message>,
    verdicts: Vec<Verdict>,
    received: Instant,
    kpis: &InboundKpis,
) -> Result<Duration, async_nats::Error> {
    let mut longest_nak = Duration::ZERO;
    for (message, verdict) in messages.iter().zip(&verdicts) {
        match verdict {
            Verdict::Committed(results) => {
                let applied = results
                    .iter()
                    .filter(|r| r.status != EventStatus::Duplicate)
                    .count();
                kpis.events_applied.fetch_add(
                    results
                        .iter()
                        .filter(|r| r.status == EventStatus::Applied)
                        .count() as u64,
                    Ordering::Relaxed,
                );
                if applied > 0 {
                    kpis.messages_applied.fetch_add(1, Ordering::Relaxed);
                } else {
                    kpis.messages_duplicate.fetch_add(1, Ordering::Relaxed);
                }
                message.ack().await?;
            }
            Verdict::Rejected { .. } => {
                kpis.messages_rejected.fetch_add(1, Ordering::Relaxed);
                message.ack_with(AckKind::Term).await?;
            }
            Verdict::Retry(reason) => {
                let delivered = message.info().map_or(1, |i| i.delivered);
                let delay = nak_delay(delivered);
                tracing::warn!(%reason, delivered, delay_ms = delay.as_millis() as u64, "inbound message not applied; nak");
                kpis.messages_retried.fetch_add(1, Ordering::Relaxed);
                longest_nak = longest_nak.max(delay);
                message.ack_with(AckKind::Nak(Some(delay))).await?;
            }
        }
    }
    // Acks are published without waiting for an answer; one flush sends them all.
    client.flush().await?;
    let latency = received.elapsed();
    for _ in &verdicts {
        kpis.observe_ack(latency);
    }
    if let Some(info) = messages.last().and_then(|m| m.info().ok()) {
        kpis.consumer_pending.store(info.pending, Ordering::Relaxed);
    }
    Ok(longest_nak)
}

/// Connects to NATS as configured.
pub async fn connect(
    settings: &NatsInboundSettings,
) -> Result<async_nats::Client, async_nats::Error> {
    let options = async_nats::ConnectOptions::new().name("stockd");
    let (options, sent) = match &settings.auth {
        NatsAuth::None => (options, "no credentials"),
        NatsAuth::Token(token) => (options.token(token.expose().to_string()), "a token"),
        NatsAuth::UserPassword { user, password } => (
            options.user_and_password(user.clone(), password.expose().to_string()),
            "a user and password",
        ),
    };
    options
        .connect(settings.url.as_str())
        .await
        .map_err(|e| match e.kind() {
            async_nats::ConnectErrorKind::AuthorizationViolation
            | async_nats::ConnectErrorKind::Authentication => format!(
                "nats_unauthorized: NATS at {} refused stockd's credentials ({e}); stockd sent {sent} \
                 (inbound.nats token_env, or user_env with password_env)",
                settings.url
            )
            .into(),
            _ => e.into(),
        })
}

/// Binds the durable pull consumer, creating the stream and the consumer
/// when they do not exist yet.
pub async fn bind(
    js: &jetstream::Context,
    settings: &NatsInboundSettings,
) -> Result<jetstream::consumer::PullConsumer, async_nats::Error> {
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: settings.stream.clone(),
            subjects: settings.subjects.clone(),
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .get_or_create_consumer(
            &settings.durable,
            pull::Config {
                durable_name: Some(settings.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                // Room for every instance to hold a full batch in flight.
                max_ack_pending: i64::try_from(settings.batch * 16).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

/// A running consumer; `stop` lets the batch in flight finish (commit and
/// ack) and then disconnects.
pub struct NatsConsumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NatsConsumer {
    pub fn start(
        store: Arc<dyn Store>,
        settings: NatsInboundSettings,
        kpis: Arc<InboundKpis>,
    ) -> NatsConsumer {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, settings, kpis, stopped));
        NatsConsumer { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<dyn Store>,
    settings: NatsInboundSettings,
    kpis: Arc<InboundKpis>,
    mut stopped: watch::Receiver<bool>,
) {
    let abort_after_commit =
        std::env::var(FAILPOINT_VAR).is_ok_and(|v| v == FAILPOINT_AFTER_COMMIT);
    if abort_after_commit {
        tracing::warn!(
            "{FAILPOINT_VAR}={FAILPOINT_AFTER_COMMIT}: the process aborts after the first commit"
        );
    }
    let mut pause = RECONNECT_FIRST;
    loop {
        let started = Instant::now();
        match session(&*store, &settings, &kpis, abort_after_commit, &mut stopped).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, url = %settings.url, stream = %settings.stream, "inbound NATS consumer failed; reconnecting");
            }
        }
        if started.elapsed() > RECONNECT_MAX {
            pause = RECONNECT_FIRST;
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// One connection's life: returns Ok when told to stop.
async fn session(
    store: &dyn Store,
    settings: &NatsInboundSettings,
    kpis: &InboundKpis,
    abort_after_commit: bool,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    if *stopped.borrow() {
        return Ok(());
    }
    let client = connect(settings).await?;
    let js = jetstream::new(client.clone());
    let consumer = bind(&js, settings).await?;
    tracing::info!(stream = %settings.stream, durable = %settings.durable, "inbound NATS consumer bound");
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(settings.batch)
        .messages()
        .await?;
    // Batches in flight (see BATCHES_IN_FLIGHT); each is settled (committed
    // and acknowledged) before the next is taken.
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => {
                // Let the batches in flight commit and be acknowledged.
                while let Some(settled) = in_flight.next().await {
                    settled?;
                }
                return Ok(());
            }
            Some(settled) = in_flight.next(), if !in_flight.is_empty() => {
                let nak: Duration = settled?;
                if !nak.is_zero() {
                    // Storage is failing: settle the rest, then give it time
                    // before taking more.
                    while let Some(settled) = in_flight.next().await {
                        settled?;
                    }
                    tokio::select! {
                        _ = stopped.changed() => return Ok(()),
                        _ = tokio::time::sleep(nak) => {}
                    }
                }
            }
            first = messages.next(), if in_flight.len() < BATCHES_IN_FLIGHT => {
                let first = match first {
                    Some(first) => first?,
                    None => return Err("the message stream ended".into()),
                };
                let received = Instant::now();
                let mut batch = vec![first];
                // Whatever else has arrived joins the group; nothing waits for more.
                while batch.len() < settings.batch {
                    match messages.next().now_or_never() {
                        Some(Some(Ok(message))) => batch.push(message),
                        Some(Some(Err(e))) => {
                            tracing::warn!(error = %e, "inbound NATS stream error");
                            break;
                        }
                        _ => break,
                    }
                }
                kpis.messages_in
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let client = &client;
                in_flight.push_back(async move {
                    let verdicts = apply_messages(store, &batch).await;
                    if abort_after_commit
                        && verdicts.iter().any(|v| matches!(v, Verdict::Committed(_)))
                    {
                        tracing::error!("failpoint {FAILPOINT_AFTER_COMMIT}: aborting before the acks");
                        std::process::abort();
                    }
                    settle(client, batch, verdicts, received, kpis).await
                });
            }
        }
    }
}
