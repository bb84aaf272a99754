//! Reconciliation: reads back what each channel shows and compares it with
//! what stockd wants it to show. A run works through the channel's listings
//! in SKU order, one page at a time, through the channel's own connector (so
//! it shares the connector's rate-limit buckets with the dispatcher), and
//! commits each page's result (counters, non-matching items, cursor) before
//! the next; a crash resumes after the last committed page.
//!
//! Race freedom: each page's outbox rows are read before and after the
//! channel read. A listing whose row was lagging, changed in between (a push
//! acknowledged, a sale seen, a new desired state) or was pushed within the
//! channel's settle window is `pending`, not drift. A listing that differs is
//! read again after a short confirmation delay (a sale's webhook may still be
//! on its way; bol.com and Amazon advise confirming before correcting) and is
//! drift only if it still differs and its row is still unchanged.
//!
//! Auto-fix (default on, per channel) queues drifting listings again through
//! the outbox: the channel's count becomes stockd's belief and the row turns
//! dirty with the note `reconciliation`, so the dispatcher pushes the desired
//! state. Listings the channel lacks, or that stockd does not know, are only
//! reported.

use super::dispatch::SyncKpis;
use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockd_channels::{ChannelError, ChannelLevel, Connector, ErrorClass, LevelQuery};
use stockd_core::availability::ListingState;
use stockd_core::{ChannelId, Sku};
use stockd_store::outbox::OutboxRow;
use stockd_store::reconcile::{
    ClassCounts, DriftClass, PageProgress, Requeue, RunItem, RunRecord, RunStatus,
};
use stockd_store::{ListingRecord, Store, StoreError};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

mod bulk;

/// A daily time in a fixed UTC offset (no time-zone database: daylight
/// saving moves the run by an hour unless the offset is changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyAt {
    pub hour: u32,
    pub minute: u32,
    /// East of UTC, in minutes.
    pub utc_offset_minutes: i32,
}

impl Default for DailyAt {
    fn default() -> Self {
        DailyAt {
            hour: 2,
            minute: 0,
            utc_offset_minutes: 0,
        }
    }
}

impl DailyAt {
    /// Parses `HH:MM` and an offset `+HH:MM` / `-HH:MM` / `Z`.
    pub fn parse(at: &str, offset: &str) -> Result<DailyAt, String> {
        let (h, m) = at
            .split_once(':')
            .ok_or_else(|| format!("reconciliation.daily_at {at:?} is not HH:MM"))?;
        let hour: u32 = h.parse().map_err(|_| format!("bad hour in {at:?}"))?;
        let minute: u32 = m.parse().map_err(|_| format!("bad minute in {at:?}"))?;
        if hour > 23 || minute > 59 {
            return Err(format!("reconciliation.daily_at {at:?} is out of range"));
        }
        let offset = offset.trim();
        let utc_offset_minutes = if offset.is_empty() || offset == "Z" {
            0
        } else {
            let (sign, rest) = match offset.as_bytes()[0] {
                b'+' => (1, &offset[1..]),
                b'-' => (-1, &offset[1..]),
                _ => return Err(format!("reconciliation.utc_offset {offset:?} needs a sign")),
            };
            let (oh, om) = rest.split_once(':').unwrap_or((rest, "0"));
            let oh: i32 = oh.parse().map_err(|_| format!("bad offset {offset:?}"))?;
            let om: i32 = om.parse().map_err(|_| format!("bad offset {offset:?}"))?;
            if oh > 14 || om > 59 {
                return Err(format!(
                    "reconciliation.utc_offset {offset:?} is out of range"
                ));
            }
            sign * (oh * 60 + om)
        };
        Ok(DailyAt {
            hour,
            minute,
            utc_offset_minutes,
        })
    }

    /// The first moment strictly after `now` at this local time.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let offset = FixedOffset::east_opt(self.utc_offset_minutes * 60)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        let local = now.with_timezone(&offset);
        let mut day = local.date_naive();
        // Today or tomorrow always has it (a fixed offset has no gaps).
        for _ in 0..3 {
            let candidate = offset
                .with_ymd_and_hms(
                    day.year(),
                    day.month(),
                    day.day(),
                    self.hour,
                    self.minute,
                    0,
                )
                .single()
                .map(|t| t.with_timezone(&Utc));
            if let Some(t) = candidate.filter(|t| *t > now) {
                return t;
            }
            day = day.succ_opt().unwrap_or(day);
        }
        now + chrono::Duration::days(1)
    }
}

/// How runs behave.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// When a run of every channel starts on its own (`None`: on demand only).
    pub schedule: Option<DailyAt>,
    /// Channels where drift is only reported.
    pub report_only: BTreeSet<ChannelId>,
    /// Listings read per page (and committed per transaction).
    pub page_size: usize,
    /// Wait before a differing listing is read again to confirm it.
    pub confirm_delay: Duration,
    /// On channels that serve a pushed value only after processing it
    /// (Google: minutes), a listing pushed this recently is not compared;
    /// `None`: the channel kind's default (15 minutes for Google).
    pub settle_after_push: Option<Duration>,
    /// How long push attempts stay in the audit trail (`[audit]
    /// retention_days`, default 30 days).
    pub audit_retention: Duration,
    /// Read channels with a bulk read (an export) in one go once they have
    /// as many listings as their connector asks for (default on; off: every
    /// run pages through `read_levels`).
    pub bulk_read: bool,
    /// From how many listings every channel is read in bulk (`None`: each
    /// connector's own threshold, e.g. 1,000 offers on bol.com).
    pub bulk_read_from: Option<usize>,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            schedule: Some(DailyAt::default()),
            report_only: BTreeSet::new(),
            page_size: 250,
            confirm_delay: Duration::from_secs(2),
            settle_after_push: None,
            audit_retention: Duration::from_secs(30 * 24 * 3600),
            bulk_read: true,
            bulk_read_from: None,
        }
    }
}

/// How long after a push a channel kind may still serve the old value:
/// Google processes product inputs in minutes (its served product lags).
fn default_settle(kind: &str) -> Duration {
    match kind {
        "gmc" => Duration::from_secs(15 * 60),
        _ => Duration::ZERO,
    }
}

/// Why a run could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("channel {0} is not connected")]
    NotConnected(ChannelId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs reconciliations in the background of `stockd serve`.
pub struct Reconciler {
    store: Arc<dyn Store>,
    connectors: BTreeMap<ChannelId, Arc<dyn Connector>>,
    config: ReconcileConfig,
    wake: Notify,
    busy: Mutex<BTreeSet<ChannelId>>,
    /// The dispatcher's figures: which protective updates it has taken
    /// and not yet sent.
    sync: Arc<SyncKpis>,
    /// Run id → listings its bulk read has delivered so far (this
    /// instance's runs only).
    bulk_reads: Mutex<BTreeMap<i64, u64>>,
}

/// The background tasks of a [`Reconciler`].
pub struct ReconcilerTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ReconcilerTask {
    /// Stops after the current page (an unfinished run resumes at next start).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn Store>,
        connectors: BTreeMap<ChannelId, Arc<dyn Connector>>,
        config: ReconcileConfig,
        sync: Arc<SyncKpis>,
    ) -> Arc<Reconciler> {
        Arc::new(Reconciler {
            store,
            connectors,
            config,
            sync,
            wake: Notify::new(),
            busy: Mutex::new(BTreeSet::new()),
            bulk_reads: Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts the loop: resumes unfinished runs, starts queued ones, and
    /// queues a run of every channel at the scheduled time.
    pub fn start(self: &Arc<Self>) -> ReconcilerTask {
        let (stop, stopped) = watch::channel(false);
        let me = self.clone();
        let task = tokio::spawn(async move { me.run(stopped).await });
        ReconcilerTask { stop, task }
    }

    /// Queues a run of `channel` (or of every connected channel). A channel
    /// with a run already queued or running gets that run back.
    pub async fn request(
        &self,
        channel: Option<&ChannelId>,
        trigger: &str,
    ) -> Result<Vec<RunRecord>, RequestError> {
        let channels: Vec<ChannelId> = match channel {
            Some(c) if self.connectors.contains_key(c) => vec![c.clone()],
            Some(c) => return Err(RequestError::NotConnected(c.clone())),
            None => self.connectors.keys().cloned().collect(),
        };
        let open = self.store.recon_open().await?;
        let mut out = Vec::new();
        for channel in channels {
            if let Some(run) = open.iter().find(|r| r.channel == channel) {
                out.push(run.clone());
                continue;
            }
            let auto_fix = !self.config.report_only.contains(&channel);
            out.push(
                self.store
                    .recon_create(&channel, trigger, auto_fix, Utc::now())
                    .await?,
            );
        }
        self.wake.notify_one();
        Ok(out)
    }

    async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut next_scheduled = self.config.schedule.map(|s| s.next_after(Utc::now()));
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        loop {
            if *stopped.borrow() {
                break;
            }
            if next_scheduled.is_some_and(|t| t <= Utc::now()) {
                if let Err(e) = self.request(None, "schedule").await {
                    tracing::error!(error = %e, "cannot queue the scheduled reconciliation");
                }
                next_scheduled = self.config.schedule.map(|s| s.next_after(Utc::now()));
            }
            match self.store.recon_open().await {
                Ok(open) => {
                    for run in open {
                        let claimed = {
                            let mut busy = lock(&self.busy);
                            busy.insert(run.channel.clone())
                        };
                        if claimed {
                            let me = self.clone();
                            let stop = stopped.clone();
                            workers.push(tokio::spawn(async move {
                                let channel = run.channel.clone();
                                me.run_one(run, stop).await;
                                lock(&me.busy).remove(&channel);
                                me.wake.notify_one();
                            }));
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read open reconciliation runs"),
            }
            workers.retain(|w| !w.is_finished());
            let wait = next_scheduled
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
        }
        for w in workers {
            let _ = w.await;
        }
    }

    async fn run_one(&self, run: RunRecord, stopped: watch::Receiver<bool>) {
        let id = run.id;
        let channel = run.channel.clone();
        let Some(connector) = self.connectors.get(&channel).cloned() else {
            let _ = self
                .store
                .recon_finish(
                    id,
                    RunStatus::Failed,
                    Some("channel is not connected".into()),
                    Utc::now(),
                )
                .await;
            return;
        };
        tracing::info!(run = id, channel = %channel, resumed = run.cursor.is_some(), "reconciliation started");
        let result = self.work(&run, connector, stopped.clone()).await;
        if *stopped.borrow() && result.is_ok() {
            // Stopped mid-way: stays running, resumes at the next start.
            return;
        }
        let (status, error) = match result {
            Ok(()) => (RunStatus::Completed, None),
            Err(e) => (RunStatus::Failed, Some(e)),
        };
        if let Err(e) = self
            .store
            .recon_finish(id, status, error.clone(), Utc::now())
            .await
        {
            tracing::error!(run = id, error = %e, "cannot record the end of a reconciliation run");
        }
        tracing::info!(run = id, channel = %channel, status = status.as_str(), error = ?error, "reconciliation finished");
    }

    async fn work(
        &self,
        run: &RunRecord,
        connector: Arc<dyn Connector>,
        stopped: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let err = |e: StoreError| e.to_string();
        let listings = self.all_listings(&run.channel).await.map_err(err)?;
        self.store
            .recon_start(run.id, listings.len() as u64, Utc::now())
            .await
            .map_err(err)?;
        let page_size = self.config.page_size.max(1);
        let settle = match default_settle(connector.kind()) {
            Duration::ZERO => Duration::ZERO,
            default => self.config.settle_after_push.unwrap_or(default),
        };
        let remaining: Vec<&ListingRecord> = listings
            .iter()
            .filter(|l| run.cursor.as_ref().is_none_or(|c| l.sku > *c))
            .collect();
        let check = Check {
            store: &*self.store,
            channel: &run.channel,
            connector: &*connector,
            sync: &self.sync,
            settle,
            confirm_delay: self.config.confirm_delay,
        };
        let bulk_from = if self.config.bulk_read {
            // Only a connector with a bulk read has a threshold to override.
            connector
                .bulk_read_from()
                .map(|own| self.config.bulk_read_from.unwrap_or(own))
        } else {
            None
        };
        if bulk_from.is_some_and(|n| listings.len() >= n.max(1)) && !remaining.is_empty() {
            return self
                .work_bulk(run, &check, &listings, &remaining, stopped)
                .await;
        }
        for page in remaining.chunks(page_size) {
            if *stopped.borrow() {
                return Ok(());
            }
            let progress = check.page(page).await?;
            self.commit(run, &check, progress).await?;
        }
        Ok(())
    }

    /// Queues the page's drifting listings again (auto-fix) and commits the
    /// page: items, counters and cursor together.
    async fn commit(
        &self,
        run: &RunRecord,
        check: &Check<'_>,
        mut progress: PageProgress,
    ) -> Result<(), String> {
        let err = |e: StoreError| e.to_string();
        if run.auto_fix {
            let fixes: Vec<Requeue> = progress
                .items
                .iter()
                .filter(|i| i.class == DriftClass::ChannelDiffers)
                .filter_map(|i| check.requeue_of(i))
                .collect();
            if !fixes.is_empty() {
                let queued: BTreeSet<String> = self
                    .store
                    .recon_requeue(&run.channel, fixes, Utc::now())
                    .await
                    .map_err(err)?
                    .into_iter()
                    .map(|s| s.as_str().to_string())
                    .collect();
                for item in &mut progress.items {
                    if queued.contains(&item.sku) {
                        item.fixed = true;
                    }
                }
                progress.fixed = queued.len() as u64;
            }
        }
        // Seen values are internal to the fix; not stored with the item.
        for item in &mut progress.items {
            if let Some(note) = &item.note {
                if note.starts_with(SEEN_PREFIX) {
                    item.note = None;
                }
            }
        }
        self.store
            .recon_progress(run.id, progress)
            .await
            .map_err(err)
    }

    async fn all_listings(&self, channel: &ChannelId) -> Result<Vec<ListingRecord>, StoreError> {
        let mut out: Vec<ListingRecord> = Vec::new();
        loop {
            let page = self
                .store
                .listings(channel, out.last().map(|l| &l.sku), 1_000)
                .await?;
            let done = page.len() < 1_000;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}

pub(super) use super::lock;

/// Marks the generations a differing item was seen with (kept in the
/// item's note until the fix is decided).
const SEEN_PREFIX: &str = "seen:";

/// Reads per page before the run gives up on a failing channel.
const READ_ATTEMPTS: u32 = 8;

/// Longest one read waits for the channel's protective updates to go
/// first, and how often it looks (a stalled dispatcher cannot stop a run).
const YIELD_MAX: Duration = Duration::from_secs(10);
const YIELD_POLL: Duration = Duration::from_millis(50);

struct Check<'a> {
    store: &'a dyn Store,
    channel: &'a ChannelId,
    connector: &'a dyn Connector,
    sync: &'a SyncKpis,
    settle: Duration,
    confirm_delay: Duration,
}

/// What one listing compared to.
enum Outcome {
    Class(DriftClass, Option<String>),
    Differs,
}

impl Check<'_> {
    /// Reads the channel for some listings, waiting out rate limits and
    /// retrying transient failures (never ahead of the dispatcher: the
    /// connector's buckets pace both).
    /// Waits while a protective update is due on the channel (the due
    /// order puts them first) or taken by the dispatcher and not yet sent,
    /// so that a read never takes the channel's rate ahead of an update
    /// that lowers what the channel shows.
    pub(super) async fn yield_to_protective(&self) {
        let started = tokio::time::Instant::now();
        while started.elapsed() < YIELD_MAX {
            // The outbox first, the dispatcher's count after: the dispatcher
            // counts rows before it marks them in flight, so a row that left
            // the due list before this read is counted when it is looked at.
            let due = match self.store.outbox_due(self.channel, Utc::now(), 1).await {
                Ok(rows) => rows.first().is_some_and(|r| r.protective),
                Err(_) => false,
            };
            if !due && self.sync.protective_unsent(self.channel) == 0 {
                return;
            }
            tokio::time::sleep(YIELD_POLL).await;
        }
    }

    async fn read(
        &self,
        listings: &[&ListingRecord],
        requests: &mut u64,
    ) -> Result<Vec<Result<ChannelLevel, ChannelError>>, String> {
        let queries: Vec<LevelQuery> = listings
            .iter()
            .map(|l| LevelQuery {
                sku: l.sku.as_str().to_string(),
                external: l.external.clone(),
            })
            .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.yield_to_protective().await;
            *requests += 1;
            match self.connector.read_levels(&queries).await {
                Ok(levels) if levels.len() == queries.len() => return Ok(levels),
                Ok(levels) => {
                    return Err(format!(
                        "connector answered {} levels for {} listings",
                        levels.len(),
                        queries.len()
                    ))
                }
                Err(e) if attempt < READ_ATTEMPTS && e.class != ErrorClass::Permanent => {
                    let wait = e
                        .retry_after
                        .unwrap_or(Duration::from_millis(200 << attempt.min(6)));
                    tracing::warn!(channel = %self.channel, error = %e, "reconciliation read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(format!("reading the channel failed: {e}")),
            }
        }
    }

    async fn rows(&self, listings: &[&ListingRecord]) -> Result<BTreeMap<Sku, OutboxRow>, String> {
        let skus: Vec<Sku> = listings.iter().map(|l| l.sku.clone()).collect();
        Ok(self
            .store
            .outbox_rows(self.channel, &skus)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| (r.sku.clone(), r))
            .collect())
    }

    /// Checks one page: read rows, read the channel, read rows again;
    /// confirm the differing ones.
    async fn page(&self, page: &[&ListingRecord]) -> Result<PageProgress, String> {
        let mut requests = 0;
        let before = self.rows(page).await?;
        let levels = self.read(page, &mut requests).await?;
        let after = self.rows(page).await?;
        self.classify(page, &before, &after, &levels, None, requests)
            .await
    }

    /// Classifies a page from the rows read before and after the channel's
    /// read and what the channel showed (`levels`, in page order); confirms
    /// the differing ones with a second read. `read_at`: when a bulk read
    /// started (a listing acknowledged after it is pending).
    async fn classify(
        &self,
        page: &[&ListingRecord],
        before: &BTreeMap<Sku, OutboxRow>,
        after: &BTreeMap<Sku, OutboxRow>,
        levels: &[Result<ChannelLevel, ChannelError>],
        read_at: Option<DateTime<Utc>>,
        mut requests: u64,
    ) -> Result<PageProgress, String> {
        let now = Utc::now();
        let mut classes: BTreeMap<Sku, (DriftClass, Option<String>)> = BTreeMap::new();
        let mut candidates: Vec<&ListingRecord> = Vec::new();
        let mut observed: BTreeMap<Sku, Option<ChannelLevel>> = BTreeMap::new();
        for (listing, level) in page.iter().zip(levels) {
            let sku = &listing.sku;
            observed.insert(sku.clone(), level.as_ref().ok().cloned());
            let acked_after_read = read_at.is_some_and(|read_at| {
                after
                    .get(sku)
                    .and_then(|r| r.pushed_at)
                    .is_some_and(|t| t >= read_at)
            });
            if acked_after_read {
                classes.insert(
                    sku.clone(),
                    (
                        DriftClass::Pending,
                        Some("acknowledged after the channel's read".into()),
                    ),
                );
                continue;
            }
            match self.compare(before.get(sku), after.get(sku), level, now) {
                Outcome::Class(class, note) => {
                    classes.insert(sku.clone(), (class, note));
                }
                Outcome::Differs => candidates.push(listing),
            }
        }
        if !candidates.is_empty() {
            tokio::time::sleep(self.confirm_delay).await;
            let before2 = self.rows(&candidates).await?;
            let levels2 = self.read(&candidates, &mut requests).await?;
            let after2 = self.rows(&candidates).await?;
            let now = Utc::now();
            for (listing, level) in candidates.iter().zip(&levels2) {
                let sku = &listing.sku;
                // Unchanged since the first read, too.
                let stable = same(before.get(sku), before2.get(sku));
                let outcome = if stable {
                    self.compare(before2.get(sku), after2.get(sku), level, now)
                } else {
                    Outcome::Class(DriftClass::Pending, Some("changed while confirming".into()))
                };
                observed.insert(sku.clone(), level.as_ref().ok().cloned());
                let class = match outcome {
                    Outcome::Differs => {
                        let row = after2.get(sku).expect("compared rows exist");
                        (
                            DriftClass::ChannelDiffers,
                            Some(format!(
                                "{SEEN_PREFIX}{}:{}",
                                row.desired_gen, row.channel_gen
                            )),
                        )
                    }
                    Outcome::Class(DriftClass::InSync, _) => (
                        DriftClass::Pending,
                        Some("differed, then matched when confirmed".into()),
                    ),
                    Outcome::Class(class, note) => (class, note),
                };
                classes.insert(sku.clone(), class);
            }
        }
        let mut progress = PageProgress {
            checked: page.len() as u64,
            counts: ClassCounts::default(),
            fixed: 0,
            channel_requests: requests,
            cursor: page.last().map(|l| l.sku.clone()),
            items: Vec::new(),
        };
        for listing in page {
            let (class, note) = classes
                .remove(&listing.sku)
                .unwrap_or((DriftClass::Pending, None));
            progress.counts.add(class, 1);
            if class == DriftClass::InSync {
                continue;
            }
            let expected = after
                .get(&listing.sku)
                .map(|r| expected_json(&r.desired, self.connector.carries_quantity()));
            let seen = observed.get(&listing.sku).cloned().flatten();
            progress.items.push(RunItem {
                sku: listing.sku.as_str().to_string(),
                class,
                expected,
                observed: seen.map(|l| observed_json(&l)),
                fixed: false,
                note,
            });
        }
        Ok(progress)
    }

    fn compare(
        &self,
        before: Option<&OutboxRow>,
        after: Option<&OutboxRow>,
        level: &Result<ChannelLevel, ChannelError>,
        now: DateTime<Utc>,
    ) -> Outcome {
        let pending = |why: &str| Outcome::Class(DriftClass::Pending, Some(why.to_string()));
        let (Some(before), Some(after)) = (before, after) else {
            return pending("no desired state yet");
        };
        if before.dirty_since.is_some() || after.dirty_since.is_some() {
            return pending("update pending");
        }
        if before.parked || after.parked {
            return pending("in the dead-letter queue");
        }
        if !same(Some(before), Some(after)) {
            return pending("changed during the read");
        }
        let settle = chrono::Duration::from_std(self.settle).unwrap_or(chrono::Duration::MAX);
        // The last push that sent something (acks of nothing are not counted).
        if after
            .recent_pushes
            .last()
            .is_some_and(|t| now - *t < settle)
        {
            return pending("pushed within the channel's settle time");
        }
        let level = match level {
            Ok(level) => level,
            Err(e) if e.status == Some(404) || e.code.contains("not_found") => {
                return Outcome::Class(
                    DriftClass::MissingOnChannel,
                    Some(format!("{}: {}", e.code, e.message)),
                )
            }
            Err(e) => {
                return Outcome::Class(
                    DriftClass::Unreadable,
                    Some(format!("{}: {}", e.code, e.message)),
                )
            }
        };
        let desired = &after.desired;
        let differs = if self.connector.carries_quantity() {
            match (level.quantity, level.availability) {
                (Some(q), _) => q != desired.quantity.max(0),
                (None, Some(a)) => a != desired.availability,
                (None, None) => false,
            }
        } else {
            level
                .availability
                .is_some_and(|a| a != desired.availability)
        };
        if differs {
            Outcome::Differs
        } else {
            Outcome::Class(DriftClass::InSync, None)
        }
    }

    fn requeue_of(&self, item: &RunItem) -> Option<Requeue> {
        let seen = item.note.as_deref()?.strip_prefix(SEEN_PREFIX)?;
        let (desired_gen, channel_gen) = seen.split_once(':')?;
        let observed_quantity = item
            .observed
            .as_ref()
            .and_then(|o| o.get("quantity"))
            .and_then(serde_json::Value::as_i64);
        Some(Requeue {
            sku: Sku::parse(&item.sku).ok()?,
            observed_quantity: observed_quantity.filter(|_| self.connector.carries_quantity()),
            forget_pushed: !self.connector.carries_quantity() || observed_quantity.is_none(),
            seen_desired_gen: desired_gen.parse().ok()?,
            seen_channel_gen: channel_gen.parse().ok()?,
        })
    }
}

/// Whether two reads of a row show no change in between.
fn same(a: Option<&OutboxRow>, b: Option<&OutboxRow>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.desired_gen == b.desired_gen
                && a.sent_gen == b.sent_gen
                && a.channel_gen == b.channel_gen
                && a.pushed_at == b.pushed_at
                && a.dirty_since == b.dirty_since
        }
        _ => false,
    }
}

fn expected_json(state: &ListingState, carries_quantity: bool) -> serde_json::Value {
    if carries_quantity {
        serde_json::json!({"quantity": state.quantity.max(0), "availability": state.availability})
    } else {
        serde_json::json!({"availability": state.availability})
    }
}

fn observed_json(level: &ChannelLevel) -> serde_json::Value {
    serde_json::to_value(level).unwrap_or(serde_json::Value::Null)
}

/// A run as the API and CLI show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: i64,
    #[schema(value_type = String)]
    pub channel: ChannelId,
    /// `api`, `schedule`, `cli`, `demo`.
    pub trigger: String,
    pub auto_fix: bool,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// stockd's listings of the channel.
    pub total: u64,
    /// Listings compared so far.
    pub listings_checked: u64,
    /// Listings per class (`in_sync`, `channel_differs`,
    /// `missing_on_channel`, `unknown_to_stockd`, `pending`, `unreadable`).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: BTreeMap<&'static str, u64>,
    /// Listings that drifted (channel differs or lacks the listing).
    pub drift: u64,
    /// Drifting listings per listing checked.
    pub drift_rate: f64,
    /// Drifting listings queued again.
    pub fixed: u64,
    /// Read calls made through the channel's connector (one per page and
    /// per confirming read on the paged path); a bulk read adds every
    /// request it sent (job start, polls, download).
    pub channel_reads: u64,
    /// While this server reads the channel in bulk for the run: listings
    /// the read has delivered so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_listings_read: Option<u64>,
    pub error: Option<String>,
}

impl From<&RunRecord> for RunView {
    fn from(r: &RunRecord) -> RunView {
        let c = r.counts;
        let counts = BTreeMap::from([
            ("in_sync", c.in_sync),
            ("channel_differs", c.channel_differs),
            ("missing_on_channel", c.missing_on_channel),
            ("unknown_to_stockd", c.unknown_to_stockd),
            ("pending", c.pending),
            ("unreadable", c.unreadable),
        ]);
        RunView {
            id: r.id,
            channel: r.channel.clone(),
            trigger: r.trigger.clone(),
            auto_fix: r.auto_fix,
            status: r.status.as_str().to_string(),
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            total: r.total,
            listings_checked: r.checked,
            counts,
            drift: c.drift(),
            drift_rate: r.drift_rate(),
            fixed: r.fixed,
            channel_reads: r.channel_requests,
            channel_listings_read: None,
            error: r.error.clone(),
        }
    }
}

/// The latest completed run of each channel, as Prometheus gauges.
pub async fn render_metrics(store: &dyn Store, out: &mut String) {
    use std::fmt::Write;
    let Ok(latest) = store.recon_latest().await else {
        return;
    };
    let _ = writeln!(
        out,
        "# HELP stockd_reconciliation_listings Listings per class in the channel's latest completed reconciliation.\n# TYPE stockd_reconciliation_listings gauge"
    );
    for run in &latest {
        let view = RunView::from(run);
        for (class, n) in &view.counts {
            let _ = writeln!(
                out,
                "stockd_reconciliation_listings{{channel=\"{}\",class=\"{class}\"}} {n}",
                crate::metrics::escape(run.channel.as_str())
            );
        }
    }
    for (name, help, get) in [
        (
            "stockd_reconciliation_drift_rate",
            "Drifting listings per listing checked in the latest completed reconciliation.",
            (|r: &RunRecord| r.drift_rate()) as fn(&RunRecord) -> f64,
        ),
        (
            "stockd_reconciliation_fixed",
            "Listings queued again by the latest completed reconciliation.",
            |r| r.fixed as f64,
        ),
        (
            "stockd_reconciliation_finished_timestamp_seconds",
            "When the latest completed reconciliation finished.",
            |r| r.finished_at.map_or(0.0, |t| t.timestamp() as f64),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for run in &latest {
            let _ = writeln!(
                out,
                "{name}{{channel=\"{}\"}} {}",
                crate::metrics::escape(run.channel.as_str()),
                get(run)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_at_parses_and_finds_the_next_moment() {
        let at = DailyAt::parse("02:00", "+01:00").expect("valid");
        assert_eq!(at.utc_offset_minutes, 60);
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 30, 0).unwrap();
        // 02:00 at +01:00 is 01:00 UTC, still ahead today.
        assert_eq!(
            at.next_after(now),
            Utc.with_ymd_and_hms(2026, 3, 1, 1, 0, 0).unwrap()
        );
        let later = Utc.with_ymd_and_hms(2026, 3, 1, 1, 0, 0).unwrap();
        assert_eq!(
            at.next_after(later),
            Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap()
        );
        assert!(DailyAt::parse("25:00", "Z").is_err());
        assert!(DailyAt::parse("02:00", "0100").is_err());
        assert_eq!(
            DailyAt::parse("23:59", "-05:30")
                .unwrap()
                .utc_offset_minutes,
            -330
        );
    }
}
