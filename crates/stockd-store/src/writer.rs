//! The single writer shared by both adapters. Requests queue on a channel;
//! the writer takes everything waiting (up to a bound) as one group, runs it
//! in one transaction, and answers every request of the group after the
//! commit. Quarantined events are replayed, in a later transaction, when a
//! variant, location or order they wait for appears.

use crate::outbox;
use crate::{StoreError, SubmitOutcome, UpsertSummary};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use stockd_core::group::{EventStatus, GroupWrites, IdempotencyRecord, Quarantined, ReplayOutcome};
use stockd_core::{Awaiting, Book, Group, IdempotencyKey, Location, Needs, Submission, Variant};
use tokio::sync::{mpsc, oneshot};

/// Most events one group commit takes; bounds transaction size and memory.
pub(crate) const GROUP_EVENTS_MAX: usize = 20_000;
/// Requests that may wait for the writer before senders are slowed down.
pub(crate) const QUEUE_REQUESTS_MAX: usize = 4_096;
/// Most rounds of a replay chain (a replayed order can wake a waiting cancel).
const REPLAY_ROUNDS_MAX: usize = 8;
/// Most quarantined events replayed in one transaction.
const REPLAY_BATCH_MAX: usize = 5_000;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

thread_local! {
    /// The writer thread's clock when it runs under a simulated clock.
    static CLOCK: std::cell::RefCell<Option<crate::Clock>> = const { std::cell::RefCell::new(None) };
    /// Told of every commit of the writer thread.
    static COMMITS: std::cell::RefCell<Option<crate::commits::CommitSignal>> =
        const { std::cell::RefCell::new(None) };
    /// True while the writer thread works on callers' commands.
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// "Now" for the writer: its simulated clock, or the system clock.
fn now() -> DateTime<Utc> {
    CLOCK
        .with(|c| c.borrow().as_ref().map(|clock| clock()))
        .unwrap_or_else(Utc::now)
}

pub(crate) enum Command {
    Submit {
        events: Vec<Submission>,
        /// How the channel's own count moved with these events (a channel
        /// order): recorded in the same transaction when an event applies,
        /// so no reader sees the order without its move.
        moved: Vec<crate::outbox::OutboxUpdate>,
        reply: Reply<SubmitOutcome>,
    },
    UpsertLocation {
        location: Location,
        reply: Reply<UpsertSummary>,
    },
    UpsertVariants {
        variants: Vec<Variant>,
        reply: Reply<UpsertSummary>,
    },
    DiscardQuarantined {
        id: i64,
        reply: Reply<bool>,
    },
    /// What the dispatcher learned from a channel; rides along with the
    /// next group of events (one commit for both).
    RecordOutbox {
        updates: Vec<crate::outbox::OutboxUpdate>,
        reply: Reply<()>,
    },
    /// Recompute listings' desired states — of `skus`, or every listing when
    /// `None` (rules or channels changed); answers with the rows written.
    Refresh {
        skus: Option<Vec<stockd_core::Sku>>,
        reply: Reply<usize>,
    },
    /// Finish what was queued before, then stop.
    Close {
        reply: Reply<()>,
    },
}

impl Command {
    fn event_count(&self) -> usize {
        match self {
            Command::Submit { events, .. } => events.len().max(1),
            Command::RecordOutbox { updates, .. } => updates.len().max(1),
            _ => 1,
        }
    }
}

/// The rows and records a group starts from.
pub(crate) struct Loaded {
    pub book: Book,
    pub keys: HashMap<IdempotencyKey, IdempotencyRecord>,
    pub next_seq: u64,
}

/// What an adapter provides to the writer. Every method but `begin` runs
/// inside the transaction `begin` opened.
pub(crate) trait Backend:
    crate::outbox::DesiredStates + crate::publish::StockChanges
{
    async fn begin(&mut self) -> Result<(), StoreError>;
    async fn commit(&mut self) -> Result<(), StoreError>;
    async fn rollback(&mut self);
    async fn load(&mut self, needs: &Needs) -> Result<Loaded, StoreError>;
    async fn write(&mut self, book: &Book, writes: &GroupWrites) -> Result<(), StoreError>;
    async fn upsert_location(&mut self, location: &Location) -> Result<(), StoreError>;
    async fn upsert_variants(&mut self, variants: &[Variant]) -> Result<(), StoreError>;
    /// Distinct wait keys of events still waiting in quarantine.
    async fn waiting_keys(&mut self) -> Result<Vec<String>, StoreError>;
    /// Waiting events with one of `wait_keys`, oldest first.
    async fn waiting_for(
        &mut self,
        wait_keys: &[String],
        limit: usize,
    ) -> Result<Vec<Quarantined>, StoreError>;
    async fn discard_quarantined(&mut self, id: i64) -> Result<bool, StoreError>;
}

/// Runs the writer until every sender is dropped, then returns.
///
/// Desired states are recomputed at start (today's date moves ETAs and the
/// velocity window moves while no writer runs) and after a rules or channel
/// change: that pass runs here, one page of SKUs per transaction, and a
/// waiting group of requests goes first between two pages, so the writer
/// takes events at once on any catalog. A crash mid-pass loses nothing: the
/// pass only rewrites what it computes and starts again at the next start.
pub(crate) async fn run<B: Backend>(
    mut backend: B,
    mut commands: mpsc::Receiver<Command>,
    recompute: Arc<AtomicBool>,
) {
    // Events whose wait ended while no writer ran (e.g. a crash right after
    // a catalog commit) are replayed at start.
    match backend.waiting_keys().await {
        Ok(keys) => {
            if let Err(e) = replay(&mut backend, keys).await {
                tracing::error!(error = %e, "replay of quarantined events at start failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "reading quarantine at start failed"),
    }
    let mut pass = Some(Pass::new(Vec::new()));
    recompute.store(true, Ordering::SeqCst);
    loop {
        let first = if pass.is_some() {
            match commands.try_recv() {
                Ok(command) => Some(command),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match commands.recv().await {
                Some(command) => Some(command),
                None => break,
            }
        };
        let Some(first) = first else {
            // Nothing waits: one page of the pass.
            if let Some(current) = pass.as_mut() {
                if current.step(&mut backend).await {
                    if let Some(done) = pass.take() {
                        done.finish();
                    }
                    recompute.store(false, Ordering::SeqCst);
                }
            }
            continue;
        };
        let mut event_count = first.event_count();
        let mut batch = vec![first];
        while event_count < GROUP_EVENTS_MAX {
            match commands.try_recv() {
                Ok(next) => {
                    event_count += next.event_count();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // A whole-catalog refresh joins the pass (started again from the
        // first SKU, so it sees the change); it is answered when the pass ends.
        let mut rest = Vec::with_capacity(batch.len());
        for command in batch {
            match command {
                Command::Refresh { skus: None, reply } => {
                    let mut replies = pass.take().map(|p| p.replies).unwrap_or_default();
                    replies.push(reply);
                    pass = Some(Pass::new(replies));
                    recompute.store(true, Ordering::SeqCst);
                }
                other => rest.push(other),
            }
        }
        SERVING.with(|s| s.set(true));
        let flow = process(&mut backend, rest).await;
        SERVING.with(|s| s.set(false));
        if flow == Flow::Stop {
            break;
        }
    }
}

/// A whole-catalog recompute under way: where it is, what it wrote, and the
/// requests waiting for its end.
struct Pass {
    after: Option<stockd_core::Sku>,
    written: usize,
    replies: Vec<Reply<usize>>,
    started: std::time::Instant,
}

impl Pass {
    fn new(replies: Vec<Reply<usize>>) -> Pass {
        Pass {
            after: None,
            written: 0,
            replies,
            started: std::time::Instant::now(),
        }
    }

    /// Recomputes the next page in a transaction of its own; true when the
    /// pass is over (a failure ends it: the next start runs it again).
    async fn step<B: Backend>(&mut self, backend: &mut B) -> bool {
        let page = async {
            backend.begin().await?;
            let page =
                outbox::refresh_page(backend, self.after.as_ref(), outbox::REFRESH_PAGE, now())
                    .await;
            finish_tx(backend, page).await
        }
        .await;
        match page {
            Ok((n, next)) => {
                self.written += n;
                self.after = next;
                self.after.is_none()
            }
            Err(e) => {
                tracing::error!(error = %e, "recomputing desired channel states failed");
                for reply in self.replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Database(e.to_string())));
                }
                true
            }
        }
    }

    fn finish(self) {
        tracing::info!(
            written = self.written,
            seconds = self.started.elapsed().as_secs_f64(),
            "desired channel states recomputed"
        );
        for reply in self.replies {
            let _ = reply.send(Ok(self.written));
        }
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

type PendingSubmit = (
    Vec<Submission>,
    Vec<crate::outbox::OutboxUpdate>,
    Reply<SubmitOutcome>,
);
type PendingRecord = (Vec<crate::outbox::OutboxUpdate>, Reply<()>);

/// Queued work that commits together: events and outbox records.
#[derive(Default)]
struct Pending {
    submits: Vec<PendingSubmit>,
    records: Vec<PendingRecord>,
}

async fn process<B: Backend>(backend: &mut B, batch: Vec<Command>) -> Flow {
    let mut pending = Pending::default();
    for command in batch {
        match command {
            Command::Submit {
                events,
                moved,
                reply,
            } => {
                pending.submits.push((events, moved, reply));
                continue;
            }
            Command::RecordOutbox { updates, reply } => {
                pending.records.push((updates, reply));
                continue;
            }
            Command::Close { reply } => {
                submit_group(backend, std::mem::take(&mut pending)).await;
                let _ = reply.send(Ok(()));
                return Flow::Stop;
            }
            // Catalog changes keep their place in the queue relative to events.
            other => {
                submit_group(backend, std::mem::take(&mut pending)).await;
                catalog_command(backend, other).await;
            }
        }
    }
    submit_group(backend, pending).await;
    Flow::Continue
}

async fn submit_group<B: Backend>(backend: &mut B, pending: Pending) {
    let Pending { submits, records } = pending;
    if submits.is_empty() {
        record_only(backend, records).await;
        return;
    }
    let updates: Vec<crate::outbox::OutboxUpdate> = records
        .iter()
        .flat_map(|(updates, _)| updates.iter().cloned())
        .collect();
    let needs = Needs::of(
        submits
            .iter()
            .flat_map(|(events, _, _)| events.iter().map(|s| &s.event)),
    );
    let outcome = in_group(backend, &needs, &updates, |group| {
        let results = submits
            .iter()
            .map(|(events, _, _)| group.submit(events))
            .collect::<Vec<_>>();
        // A channel's count moved only with an order that applied (not a
        // redelivery, not one waiting in quarantine).
        let moved = submits
            .iter()
            .zip(&results)
            .filter(|(_, result)| {
                result
                    .as_ref()
                    .is_ok_and(|events| events.iter().any(|e| e.status == EventStatus::Applied))
            })
            .flat_map(|((_, moved, _), _)| moved.iter().cloned())
            .collect();
        (results, moved)
    })
    .await;
    match outcome {
        Ok((results, writes)) => {
            // Cancels and ships that waited for these orders are replayed
            // before answering, so a client reads its own writes.
            let wake = wake_keys(&writes).collect::<BTreeSet<_>>();
            wake_waiting(backend, wake).await;
            for ((_, _, reply), result) in submits.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
            for (_, reply) in records {
                let _ = reply.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = submits.len(), "group commit failed");
            for (_, _, reply) in submits {
                let _ = reply.send(Err(StoreError::Database(e.to_string())));
            }
            for (_, reply) in records {
                let _ = reply.send(Err(StoreError::Database(e.to_string())));
            }
        }
    }
}

/// Outbox records with no events to ride along: one transaction of their own.
async fn record_only<B: Backend>(backend: &mut B, records: Vec<PendingRecord>) {
    if records.is_empty() {
        return;
    }
    let updates: Vec<crate::outbox::OutboxUpdate> = records
        .iter()
        .flat_map(|(updates, _)| updates.iter().cloned())
        .collect();
    let result = match backend.begin().await {
        Ok(()) => {
            let r = backend.record_outbox(&updates).await;
            finish_tx(backend, r).await
        }
        Err(e) => Err(e),
    };
    for (_, reply) in records {
        let _ = reply.send(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Database(e.to_string())),
        });
    }
}

async fn catalog_command<B: Backend>(backend: &mut B, command: Command) {
    match command {
        Command::Submit { .. } | Command::Close { .. } | Command::RecordOutbox { .. } => {
            unreachable!("submits, outbox records and close are handled by the caller")
        }
        Command::UpsertLocation { location, reply } => {
            let result = match backend.begin().await {
                Ok(()) => {
                    let r = backend.upsert_location(&location).await;
                    finish_tx(backend, r).await
                }
                Err(e) => Err(e),
            };
            let mut wake = BTreeSet::from([Awaiting::Location(location.id.clone()).wait_key()]);
            if location.sellable {
                wake.insert(Awaiting::SellableLocation.wait_key());
            }
            let _ = reply.send(finish_catalog(backend, result, wake).await);
        }
        Command::UpsertVariants { variants, reply } => {
            let result = match backend.begin().await {
                Ok(()) => {
                    let r = backend.upsert_variants(&variants).await;
                    finish_tx(backend, r).await
                }
                Err(e) => Err(e),
            };
            let wake = variants
                .iter()
                .map(|v| Awaiting::Variant(v.sku.clone()).wait_key())
                .collect();
            let upserted = variants.len();
            let _ = reply.send(
                finish_catalog(backend, result, wake)
                    .await
                    .map(|s| UpsertSummary { upserted, ..s }),
            );
        }
        // The writer's loop runs these as its paged pass; here one runs whole.
        Command::Refresh { skus: None, reply } => {
            let mut pass = Pass::new(vec![reply]);
            while !pass.step(backend).await {}
            pass.finish();
        }
        Command::Refresh {
            skus: Some(skus),
            reply,
        } => {
            let result = match backend.begin().await {
                Ok(()) => {
                    let r = outbox::refresh_skus_now(backend, &skus, now()).await;
                    finish_tx(backend, r).await
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        Command::DiscardQuarantined { id, reply } => {
            let result = match backend.begin().await {
                Ok(()) => {
                    let r = backend.discard_quarantined(id).await;
                    finish_tx(backend, r).await
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
    }
}

async fn finish_catalog<B: Backend>(
    backend: &mut B,
    result: Result<(), StoreError>,
    wake: BTreeSet<String>,
) -> Result<UpsertSummary, StoreError> {
    result?;
    let replayed = wake_waiting(backend, wake).await;
    Ok(UpsertSummary {
        upserted: 1,
        replayed,
    })
}

/// Replays the waiting events among `wake`; returns how many were applied.
async fn wake_waiting<B: Backend>(backend: &mut B, wake: BTreeSet<String>) -> usize {
    if wake.is_empty() {
        return 0;
    }
    let result = async {
        let waiting = backend.waiting_keys().await?;
        let keys: Vec<String> = waiting.into_iter().filter(|k| wake.contains(k)).collect();
        replay(backend, keys).await
    }
    .await;
    result.unwrap_or_else(|e| {
        // The events stay quarantined and are replayed at the next start.
        tracing::error!(error = %e, "replay of quarantined events failed");
        0
    })
}

async fn replay<B: Backend>(backend: &mut B, mut keys: Vec<String>) -> Result<usize, StoreError> {
    let mut applied = 0;
    for _ in 0..REPLAY_ROUNDS_MAX {
        if keys.is_empty() {
            break;
        }
        let entries = backend.waiting_for(&keys, REPLAY_BATCH_MAX).await?;
        if entries.is_empty() {
            break;
        }
        let needs = Needs::of(entries.iter().map(|e| &e.event));
        let (outcomes, writes) = in_group(backend, &needs, &[], |group| {
            let outcomes = entries.iter().map(|e| group.replay(e)).collect::<Vec<_>>();
            (outcomes, Vec::new())
        })
        .await?;
        let replayed_now = outcomes
            .iter()
            .filter(|o| matches!(o, ReplayOutcome::Applied { .. }))
            .count();
        applied += replayed_now;
        tracing::info!(
            replayed = replayed_now,
            still_waiting = outcomes.len() - replayed_now,
            "replayed quarantined events"
        );
        // Orders created by the replay may wake waiting cancels and ships.
        let mut next: Vec<String> = wake_keys(&writes).collect();
        if entries.len() == REPLAY_BATCH_MAX && replayed_now > 0 {
            next.extend(keys.iter().cloned());
        }
        next.sort();
        next.dedup();
        keys = next;
    }
    Ok(applied)
}

/// Wait keys of quarantined events a group's writes can wake: cancels and
/// ships waiting for orders it created, verifications waiting for RMAs it received.
fn wake_keys(writes: &GroupWrites) -> impl Iterator<Item = String> + '_ {
    let orders = writes
        .orders_created
        .iter()
        .map(|o| Awaiting::Order(o.clone()).wait_key());
    let returns = writes
        .returns_received
        .iter()
        .map(|r| Awaiting::Return(r.clone()).wait_key());
    orders.chain(returns)
}

/// Loads a group's rows, lets `body` apply requests, writes and commits.
async fn in_group<B: Backend, R>(
    backend: &mut B,
    needs: &Needs,
    records: &[crate::outbox::OutboxUpdate],
    body: impl FnOnce(&mut Group<'_>) -> (R, Vec<crate::outbox::OutboxUpdate>),
) -> Result<(R, GroupWrites), StoreError> {
    backend.begin().await?;
    let result = async {
        let mut loaded = backend.load(needs).await?;
        let now = now();
        let mut group = Group::new(&mut loaded.book, loaded.keys, loaded.next_seq, now);
        let (output, moved) = body(&mut group);
        let (writes, _) = group.finish();
        backend.write(&loaded.book, &writes).await?;
        // The outbox: desired channel states move in the same transaction.
        let touched = outbox::touched_skus(&writes.ledger);
        outbox::refresh(backend, &touched, now).await?;
        // The dispatcher's records: generation-aware, so their order
        // relative to the refresh does not matter.
        backend.record_outbox(records).await?;
        backend.record_outbox(&moved).await?;
        // The publish outbox (`[outbound.nats]`): the touched SKUs, marked
        // in this transaction so that no committed change goes unpublished.
        crate::publish::mark_changed(backend, &touched, now).await?;
        Ok((output, writes))
    }
    .await;
    finish_tx(backend, result).await
}

async fn finish_tx<B: Backend, T>(
    backend: &mut B,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            backend.commit().await?;
            announce_commit();
            Ok(value)
        }
        Err(e) => {
            backend.rollback().await;
            Err(e)
        }
    }
}

/// Moves `Store::commits` for this writer thread, before anyone hears the
/// answer: a dispatcher waiting for changes wakes in the same moment. Under
/// a simulated clock only commits a caller waits for count: those happen at
/// a point of the simulation, while the writer's own work (the recompute
/// pass, the replay at start) commits whenever its thread gets to it, and
/// waking the dispatcher then would make a seed's day differ run to run
/// (the dispatcher's safety-net poll finds that work instead).
fn announce_commit() {
    let simulated = CLOCK.with(|c| c.borrow().is_some());
    if simulated && !SERVING.with(std::cell::Cell::get) {
        return;
    }
    COMMITS.with(|c| {
        if let Some(commits) = c.borrow().as_ref() {
            commits.announce();
        }
    });
}

/// The last idempotency write per key (a group may write a key twice).
pub(crate) fn last_per_key(
    writes: &GroupWrites,
) -> Vec<(&IdempotencyKey, Option<&IdempotencyRecord>)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<_> = writes
        .idempotency
        .iter()
        .rev()
        .filter(|(key, _)| seen.insert(key))
        .map(|(key, record)| (key, record.as_ref()))
        .collect();
    out.reverse();
    out
}

/// A handle to a running writer thread.
pub(crate) struct WriterHandle {
    pub commands: mpsc::Sender<Command>,
    /// A simulated clock: "now" comes from it, and callers wait for answers
    /// on a blocking thread (see [`crate::open_simulated`]).
    clock: Option<crate::Clock>,
    /// True while desired states are being recomputed (start, rules change).
    pub recompute: Arc<AtomicBool>,
    /// Moves with every commit of the writer.
    pub commits: crate::commits::CommitSignal,
    pub thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WriterHandle {
    /// Starts `make_backend` and the writer loop on a thread of its own, with
    /// its own single-threaded runtime (the backend need not be `Send`).
    pub fn spawn<B, F>(name: &str, make_backend: F) -> Result<WriterHandle, StoreError>
    where
        B: Backend + 'static,
        F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<B, StoreError>>>>
            + Send
            + 'static,
    {
        WriterHandle::spawn_with(name, None, make_backend)
    }

    /// [`WriterHandle::spawn`] with an optional simulated clock.
    pub fn spawn_with<B, F>(
        name: &str,
        clock: Option<crate::Clock>,
        make_backend: F,
    ) -> Result<WriterHandle, StoreError>
    where
        B: Backend + 'static,
        F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<B, StoreError>>>>
            + Send
            + 'static,
    {
        let thread_clock = clock.clone();
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let recompute = Arc::new(AtomicBool::new(true));
        let recompute_flag = recompute.clone();
        let commits = crate::commits::CommitSignal::new();
        let commits_tx = commits.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                CLOCK.with(|c| *c.borrow_mut() = thread_clock);
                COMMITS.with(|c| *c.borrow_mut() = Some(commits_tx));
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::Database(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match make_backend().await {
                        Ok(backend) => {
                            let _ = ready_tx.send(Ok(()));
                            run(backend, rx, recompute_flag).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| StoreError::Database(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| StoreError::Database("writer thread failed to start".into()))??;
        Ok(WriterHandle {
            commands: tx,
            clock,
            recompute,
            commits,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Whether the recompute pass of desired states is over.
    pub fn recompute_done(&self) -> bool {
        !self.recompute.load(Ordering::SeqCst)
    }

    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        if self.clock.is_some() {
            // The writer thread reads the moment its caller last saw.
            let _ = self.now();
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        if self.clock.is_some() {
            // Simulated: the caller's thread waits for the writer, so nothing
            // else runs (and a paused clock does not move) meanwhile — every
            // write happens at one point of the simulation's single thread.
            return crate::sim_wait::block_on(answer).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// "Now" as the writer sees it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.as_ref().map_or_else(Utc::now, |clock| clock())
    }

    pub async fn submit(&self, events: Vec<Submission>) -> Result<SubmitOutcome, StoreError> {
        self.submit_moving(events, Vec::new()).await
    }

    /// `submit`, with `moved` (how the channel's own count moved with these
    /// events) recorded in the same transaction when an event applies.
    pub async fn submit_moving(
        &self,
        events: Vec<Submission>,
        moved: Vec<crate::outbox::OutboxUpdate>,
    ) -> Result<SubmitOutcome, StoreError> {
        self.call(|reply| Command::Submit {
            events,
            moved,
            reply,
        })
        .await
    }

    pub async fn upsert_location(&self, location: Location) -> Result<UpsertSummary, StoreError> {
        self.call(|reply| Command::UpsertLocation { location, reply })
            .await
    }

    pub async fn upsert_variants(
        &self,
        variants: Vec<Variant>,
    ) -> Result<UpsertSummary, StoreError> {
        self.call(|reply| Command::UpsertVariants { variants, reply })
            .await
    }

    pub async fn refresh(&self, skus: Option<Vec<stockd_core::Sku>>) -> Result<usize, StoreError> {
        self.call(|reply| Command::Refresh { skus, reply }).await
    }

    pub async fn record_outbox(
        &self,
        updates: Vec<crate::outbox::OutboxUpdate>,
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.call(|reply| Command::RecordOutbox { updates, reply })
            .await
    }

    pub async fn discard_quarantined(&self, id: i64) -> Result<bool, StoreError> {
        self.call(|reply| Command::DiscardQuarantined { id, reply })
            .await
    }

    /// Commits everything queued, stops the writer and waits for its thread.
    pub async fn close(&self) {
        let _ = self.call(|reply| Command::Close { reply }).await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            crate::sim_wait::join(thread, self.clock.is_some()).await;
        }
    }
}
