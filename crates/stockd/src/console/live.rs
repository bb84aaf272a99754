//! Live figures for the overview's charts: every `SAMPLE_EVERY` the console
//! samples the ledger head (events/s), each channel's update latency p95
//! (over the dispatcher's recent samples) and outbox lag (age of the oldest
//! unsent update), keeping the last hour in memory.

use crate::api::AppState;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::Duration;
use stockd_core::ChannelId;

/// How often the sampler looks.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: one hour.
pub const SAMPLES_KEPT: usize = 1800;

/// One channel at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSample {
    pub channel: ChannelId,
    /// Update latency p95 in milliseconds (none before the first acknowledgement).
    pub latency_p95_ms: Option<f64>,
    /// Age of the oldest unsent update in seconds (0 when in sync).
    pub lag_s: f64,
}

/// Every figure at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Ledger events per second since the previous sample.
    pub events_per_s: f64,
    pub channels: Vec<ChannelSample>,
}

/// The last hour of samples.
#[derive(Default)]
pub struct Live {
    samples: Mutex<VecDeque<Sample>>,
    head: Mutex<Option<(DateTime<Utc>, u64)>>,
}

impl Live {
    fn lock_samples(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        match self.samples.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds a sample, dropping the oldest beyond an hour.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.lock_samples();
        if samples.len() >= SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.lock_samples().iter().cloned().collect()
    }

    /// Events per second between the previous ledger head and this one.
    fn rate(&self, at: DateTime<Utc>, head: u64) -> f64 {
        let mut last = match self.head.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let rate = match *last {
            Some((then, before)) => {
                let seconds = (at - then).num_milliseconds() as f64 / 1000.0;
                if seconds > 0.0 {
                    head.saturating_sub(before) as f64 / seconds
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        *last = Some((at, head));
        rate
    }
}

/// Takes one sample now.
pub async fn sample(app: &AppState, live: &Live) -> Result<(), stockd_store::StoreError> {
    let now = Utc::now();
    let head = app.store.ledger_head().await?;
    let channels: Vec<ChannelId> = app
        .store
        .channels()
        .await?
        .into_iter()
        .filter(|c| c.enabled)
        .map(|c| c.id)
        .collect();
    let health = app.store.channel_health(&channels).await?;
    let figures = app.sync_kpis.figures();
    let channels = health
        .into_iter()
        .map(|h| ChannelSample {
            latency_p95_ms: figures
                .iter()
                .find(|f| f.channel == h.channel)
                .and_then(|f| f.latency_ms)
                .map(|l| l.p95),
            lag_s: h.oldest_unsent.map_or(0.0, |t| {
                ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0)
            }),
            channel: h.channel,
        })
        .collect();
    live.push(Sample {
        at: now,
        events_per_s: live.rate(now, head),
        channels,
    });
    Ok(())
}

/// Samples every `SAMPLE_EVERY` until `live` is dropped (with the router).
pub fn spawn_sampler(app: AppState, live: Weak<Live>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(live) = live.upgrade() else { return };
            if let Err(e) = sample(&app, &live).await {
                tracing::debug!(error = %e, "console sample skipped");
            }
        }
    });
}
