//! Stock changes published out (`[outbound.nats]`): every SKU whose stock a
//! committed group touched is marked in that group's transaction (the
//! publish outbox, `stockd_store::publish`); this publisher reads the marked
//! SKUs, publishes each one's current quantities and what each channel may
//! show on `<subject_prefix>.<sku>` to a JetStream stream, and records the
//! generation it published once the stream has acknowledged it.
//!
//! Each message carries `Nats-Msg-Id: <sku>:<gen>`, so the stream drops a
//! repeat (a crash before recording, two instances publishing the same
//! change). Per SKU, messages are published in generation order: one SKU is
//! at most once in a batch and a batch is acknowledged before the next.
//! Changes that come faster than the publisher coalesce into the latest
//! state (its `gen` then skips the numbers in between).
//!
//! Payload, version 1 (JSON):
//! `{"version":1,"sku","gen","seq","changed_at","published_at","on_hand",
//! "reserved","available","pending_return","oversold","channels":[{"channel",
//! "quantity","availability","eta"}]}`.

use crate::config::{ConfigError, Secret};
use crate::inbound::NatsAuth;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockd_store::publish::StockChange;
use stockd_store::Store;
use tokio::sync::watch;

/// The payload version this code writes.
pub const PAYLOAD_VERSION: u32 = 1;
/// SKUs read per round.
const BATCH: u32 = 500;
const IDLE_POLL: Duration = Duration::from_millis(100);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// `[outbound]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutbound {
    pub nats: Option<FileNatsOutbound>,
}

/// `[outbound.nats]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNatsOutbound {
    pub url: String,
    /// Subjects are `<subject_prefix>.<sku>` (default `stockd.stock`).
    pub subject_prefix: Option<String>,
    /// The stream that stores them; created when absent (default `STOCKD_STOCK`).
    pub stream: Option<String>,
    pub token_env: Option<String>,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
}

/// Resolved `[outbound.nats]`.
#[derive(Debug, Clone)]
pub struct NatsOutboundSettings {
    pub url: String,
    pub auth: NatsAuth,
    pub subject_prefix: String,
    pub stream: String,
}

impl FileOutbound {
    pub fn resolve(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<NatsOutboundSettings>, ConfigError> {
        let Some(n) = self.nats else {
            return Ok(None);
        };
        let error = |m: &str| ConfigError::Inbound(format!("outbound.nats: {m}"));
        if !(n.url.starts_with("nats://") || n.url.starts_with("tls://")) {
            return Err(error("url must start with nats:// or tls://"));
        }
        let var = |v: &Option<String>| -> Result<Option<String>, ConfigError> {
            match v {
                None => Ok(None),
                Some(v) => env(v)
                    .filter(|x| !x.is_empty())
                    .map(Some)
                    .ok_or_else(|| error(&format!("environment variable {v} is not set or empty"))),
            }
        };
        let auth = match (var(&n.token_env)?, var(&n.user_env)?, var(&n.password_env)?) {
            (None, None, None) => NatsAuth::None,
            (Some(t), None, None) => NatsAuth::Token(Secret::new(t)),
            (None, Some(user), Some(p)) => NatsAuth::UserPassword {
                user,
                password: Secret::new(p),
            },
            _ => {
                return Err(error(
                    "give either token_env, or user_env with password_env",
                ))
            }
        };
        let subject_prefix = n.subject_prefix.unwrap_or_else(|| "stockd.stock".into());
        if subject_prefix.is_empty()
            || subject_prefix.contains(['*', '>', ' '])
            || subject_prefix.ends_with('.')
        {
            return Err(error(
                "subject_prefix must be a plain subject without wildcards",
            ));
        }
        let stream = n.stream.unwrap_or_else(|| "STOCKD_STOCK".into());
        if stream.is_empty() || stream.contains(['.', ' ', '*', '>']) {
            return Err(error("stream must be a name without '.', ' ', '*' or '>'"));
        }
        Ok(Some(NatsOutboundSettings {
            url: n.url,
            auth,
            subject_prefix,
            stream,
        }))
    }
}

/// One channel's share of the payload.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ChannelShown {
    pub channel: String,
    pub quantity: i64,
    pub availability: serde_json::Value,
    pub eta: Option<chrono::NaiveDate>,
}

/// The published message, version 1.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct StockMessage {
    pub version: u32,
    pub sku: String,
    /// Grows with every committed change of the SKU; a consumer keeps the highest.
    pub gen: u64,
    /// The ledger sequence of the change.
    pub seq: u64,
    pub changed_at: chrono::DateTime<chrono::Utc>,
    pub published_at: chrono::DateTime<chrono::Utc>,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub pending_return: i64,
    pub oversold: i64,
    pub channels: Vec<ChannelShown>,
}

/// `<prefix>.<sku>`, with the characters a subject token cannot hold
/// (`.`, `*`, `>`, whitespace, `%`) written as `%XX`.
pub fn subject_for(prefix: &str, sku: &str) -> String {
    let mut token = String::with_capacity(sku.len());
    for c in sku.chars() {
        if matches!(c, '.' | '*' | '>' | '%') || c.is_whitespace() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                token.push_str(&format!("%{b:02X}"));
            }
        } else {
            token.push(c);
        }
    }
    format!("{prefix}.{token}")
}

/// Counters of the publisher, for `/metrics`.
#[derive(Default)]
pub struct OutboundKpis {
    /// Messages the stream acknowledged.
    pub messages_published: AtomicU64,
    /// Rounds that failed (connection, publish or store); they are retried.
    pub publish_failures: AtomicU64,
}

impl OutboundKpis {
    /// Appends the outbound series in the Prometheus text format;
    /// `lag_seconds` is the age of the oldest change not yet published
    /// (0 when none waits), left out when unknown.
    pub fn render(&self, lag_seconds: Option<f64>, out: &mut String) {
        for (name, help, value) in [
            (
                "stockd_outbound_messages_published_total",
                "Stock change messages the stream acknowledged.",
                &self.messages_published,
            ),
            (
                "stockd_outbound_publish_failures_total",
                "Publisher rounds that failed and are retried.",
                &self.publish_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        if let Some(lag) = lag_seconds {
            let name = "stockd_outbound_publish_lag_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Age of the oldest stock change not yet published (0 when none waits)."
            );
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {lag}");
        }
    }
}

/// The `/metrics` series of the publisher. The lag is read from the publish
/// outbox, so it keeps growing while the bus is down; it is left out when
/// the store cannot answer.
pub async fn render_metrics(store: &dyn Store, kpis: &OutboundKpis, out: &mut String) {
    let lag = match store.stock_changes_due(1).await {
        Ok(due) => Some(due.first().map_or(0.0, |oldest| {
            (chrono::Utc::now() - oldest.changed_at)
                .num_milliseconds()
                .max(0) as f64
                / 1000.0
        })),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the publish outbox for /metrics");
            None
        }
    };
    kpis.render(lag, out);
}

/// A running publisher.
pub struct Publisher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub fn start(
        store: Arc<dyn Store>,
        settings: NatsOutboundSettings,
        kpis: Arc<OutboundKpis>,
    ) -> Publisher {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, settings, kpis, stopped));
        Publisher { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<dyn Store>,
    settings: NatsOutboundSettings,
    kpis: Arc<OutboundKpis>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pause = RETRY_FIRST;
    loop {
        match session(&*store, &settings, &kpis, &mut stopped).await {
            Ok(()) => return,
            Err(e) => {
                kpis.publish_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, url = %settings.url, "stock publisher failed; retrying")
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

async fn session(
    store: &dyn Store,
    settings: &NatsOutboundSettings,
    kpis: &OutboundKpis,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let options = async_nats::ConnectOptions::new().name("stockd-publisher");
    let options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::Token(t) => options.token(t.expose().to_string()),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_string())
        }
    };
    let client = options.connect(settings.url.as_str()).await?;
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: settings.stream.clone(),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    loop {
        if *stopped.borrow() {
            return Ok(());
        }
        let due = store.stock_changes_due(BATCH).await?;
        if due.is_empty() {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        publish_batch(store, &js, settings, kpis, due).await?;
    }
}

async fn publish_batch(
    store: &dyn Store,
    js: &jetstream::Context,
    settings: &NatsOutboundSettings,
    kpis: &OutboundKpis,
    due: Vec<StockChange>,
) -> Result<(), async_nats::Error> {
    let now = chrono::Utc::now();
    let mut acks = Vec::with_capacity(due.len());
    for change in &due {
        let view = store.stock(&change.sku).await?;
        let message = StockMessage {
            version: PAYLOAD_VERSION,
            sku: change.sku.as_str().to_string(),
            gen: change.gen,
            seq: change.caused_seq,
            changed_at: change.changed_at,
            published_at: now,
            on_hand: view.as_ref().map_or(0, |v| v.on_hand),
            reserved: view.as_ref().map_or(0, |v| v.reserved),
            available: view.as_ref().map_or(0, |v| v.available),
            pending_return: view.as_ref().map_or(0, |v| v.pending_return),
            oversold: view.as_ref().map_or(0, |v| v.oversold),
            channels: change
                .channels
                .iter()
                .map(|(channel, state)| ChannelShown {
                    channel: channel.as_str().to_string(),
                    quantity: state.quantity,
                    availability: serde_json::to_value(state.availability)
                        .unwrap_or(serde_json::Value::Null),
                    eta: state.eta,
                })
                .collect(),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}:{}", change.sku.as_str(), change.gen).as_str(),
        );
        let payload = serde_json::to_vec(&message)?;
        acks.push(
            js.publish_with_headers(
                subject_for(&settings.subject_prefix, change.sku.as_str()),
                headers,
                payload.into(),
            )
            .await?,
        );
    }
    for ack in acks {
        ack.await?;
        kpis.messages_published.fetch_add(1, Ordering::Relaxed);
    }
    store
        .stock_published(due.into_iter().map(|c| (c.sku, c.gen)).collect())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_escape_what_a_token_cannot_hold() {
        assert_eq!(
            subject_for("stockd.stock", "TS-RED-M"),
            "stockd.stock.TS-RED-M"
        );
        assert_eq!(subject_for("s", "A.B*C>D E%"), "s.A%2EB%2AC%3ED%20E%25");
    }
}
