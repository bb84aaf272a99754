//! The transactional outbox. Each listing has one `listing_state` row: the
//! state the channel should show (`desired`, with the rules version that
//! produced it and a generation counter) and the state the channel last
//! acknowledged (`pushed`). The event writer recomputes the affected listings
//! inside each group's transaction and bumps `desired_gen` when the value
//! changes, so a committed event never loses its channel update; the
//! dispatcher sends only the latest desired state of a listing (coalescing),
//! protective updates first (they lower what the channel shows), then
//! oldest `dirty_since_ms` first per channel. Rows being pushed carry an
//! in-flight mark; a channel's lease row names the one instance that pushes
//! to it and keeps its order-poll cursor.
//!
//! The SQL is shared by both dialects: statements are written with `?N`
//! placeholders and PostgreSQL's `$N` form is derived from them.

use crate::availability::{AvailabilityReads, LoadedSetup, RuleSet, Setup, StockData};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use stockd_core::availability::ListingState;
use stockd_core::group::LedgerEntry;
use stockd_core::{ChannelId, Sku};

/// One listing's outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub channel: ChannelId,
    pub sku: Sku,
    pub desired: ListingState,
    pub rules_version: Option<u32>,
    pub desired_gen: u64,
    /// Ledger sequence of the event that last changed `desired` (none when a
    /// rules or catalog change did).
    pub caused_seq: Option<u64>,
    /// When the cause was received: where update latency is measured from.
    pub caused_at: DateTime<Utc>,
    /// Since when the channel lags `desired` (`None`: in sync).
    pub dirty_since: Option<DateTime<Utc>>,
    pub sent_gen: u64,
    /// What the channel last acknowledged.
    pub pushed: Option<ListingState>,
    pub pushed_at: Option<DateTime<Utc>>,
    /// What stockd believes the channel's own count is now.
    pub channel_quantity: Option<i64>,
    /// Counts the channel's own moves (sales seen by webhook or poll): an
    /// acknowledgement cleans the row only if none came in since it was read.
    pub channel_gen: u64,
    /// Push times of the last 24 hours (the change budget).
    pub recent_pushes: Vec<DateTime<Utc>>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// In the dead-letter queue: generation `parked_gen` is not sent until
    /// retried or discarded; a newer desired state is.
    pub parked: bool,
    pub parked_gen: u64,
    /// The update lowers what the channel shows (sent before any other).
    pub protective: bool,
    /// Receipt of the oldest cause the channel has not acknowledged yet.
    pub unacked_since: Option<DateTime<Utc>>,
    /// An update the channel accepted and acknowledges later (followed by
    /// the dispatcher's tracker; survives a restart).
    pub accepted: Option<Accepted>,
}

/// An update the channel accepted and will acknowledge later.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accepted {
    /// What the channel named it by (bol: process status id; Amazon: feed
    /// id and message id).
    pub reference: String,
    /// What was sent.
    pub sent: SentUpdate,
    /// When the channel accepted it.
    pub at: DateTime<Utc>,
}

/// What one push sent, as kept while its acknowledgement is awaited.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SentUpdate {
    /// The generation of the desired state sent.
    pub gen: u64,
    /// The state sent.
    pub state: ListingState,
    /// The quantity put on the wire (after the channel's own caps).
    pub quantity: i64,
    /// `channel_gen` of the row when it was sent.
    pub channel_gen: u64,
    /// The update lowered what the channel showed.
    pub protective: bool,
}

impl OutboxRow {
    /// Where this update's latency runs from: the oldest cause the channel
    /// has not acknowledged.
    pub fn latency_start(&self) -> DateTime<Utc> {
        self.unacked_since.unwrap_or(self.caused_at)
    }

    /// Sending a state newer than the one a dead letter parked.
    pub fn supersedes_dead_letter(&self) -> bool {
        self.parked && self.desired_gen > self.parked_gen
    }
}

/// A dead letter: an update the channel refused for good, or that ran out
/// of attempts, with what the channel said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub channel: ChannelId,
    pub sku: Sku,
    pub desired_gen: u64,
    pub desired: ListingState,
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// A newer desired state of the listing exists: this letter's state is
    /// no longer what the channel should show.
    pub superseded: bool,
    /// The cause was transient (network, timeout, 5xx): the listing is sent
    /// again once the channel acknowledges pushes again.
    pub transient: bool,
}

/// A change the dispatcher records after talking to a channel.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxUpdate {
    /// The channel holds `state` for generation `gen`.
    Acked {
        channel: ChannelId,
        sku: Sku,
        gen: u64,
        state: ListingState,
        /// The channel's count as it answered; `None` keeps stockd's belief
        /// (nothing was sent).
        channel_quantity: Option<i64>,
        at: DateTime<Utc>,
        /// Counted against the change budget (false when nothing was sent).
        counted: bool,
        /// The row's push times before this one.
        recent_before: Vec<DateTime<Utc>>,
        /// `channel_gen` when the row was read.
        channel_gen: u64,
    },
    /// A failed attempt; try again at `next_attempt_at`.
    Failed {
        channel: ChannelId,
        sku: Sku,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: String,
    },
    /// Not now (change budget, rate limit): no attempt is counted.
    Deferred {
        channel: ChannelId,
        sku: Sku,
        until: DateTime<Utc>,
        note: Option<String>,
    },
    /// The channel's count differs from what stockd believed.
    ChannelQuantity {
        channel: ChannelId,
        sku: Sku,
        quantity: Option<i64>,
    },
    /// Moved to the dead-letter queue.
    Dead { letter: DeadLetter },
    /// A push of the row is under way by `holder`: no round takes it before
    /// `until` (the push resolves first, or its holder's lease is taken over).
    InFlight {
        channel: ChannelId,
        sku: Sku,
        holder: String,
        until: DateTime<Utc>,
    },
    /// The channel accepted the update and acknowledges it later: what was
    /// sent and the channel's reference are kept; no round takes the row
    /// before `until` (the tracker resolves it first).
    Accepted {
        channel: ChannelId,
        sku: Sku,
        accepted: Accepted,
        until: DateTime<Utc>,
    },
    /// The channel's own count moved by `delta` (it sold or restocked);
    /// `None` forgets it. The listing is looked at again.
    ChannelMoved {
        channel: ChannelId,
        sku: Sku,
        delta: Option<i64>,
        at: DateTime<Utc>,
    },
}

/// Storage of the outbox and the dead-letter queue.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Listings of `channel` that lag and may be tried at `now`, oldest first.
    async fn outbox_due(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// Outbox rows in (channel, sku) order after `after`; `pending_only`
    /// keeps the lagging ones.
    async fn outbox(
        &self,
        channel: Option<&ChannelId>,
        after: Option<(&ChannelId, &Sku)>,
        pending_only: bool,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// The rows of some listings of one channel.
    async fn outbox_rows(
        &self,
        channel: &ChannelId,
        skus: &[Sku],
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// Records what the dispatcher learned, all in one transaction.
    async fn outbox_record(&self, updates: Vec<OutboxUpdate>) -> Result<(), StoreError>;
    /// Moves what stockd believes a channel holds by `delta` (the channel
    /// sold or restocked on its own); `None` forgets it.
    async fn outbox_channel_moved(
        &self,
        channel: &ChannelId,
        moves: Vec<(Sku, Option<i64>)>,
    ) -> Result<(), StoreError>;
    async fn dead_letters(&self, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;
    /// Per channel with unsent updates: since when its oldest one lags.
    async fn outbox_oldest_unsent(&self) -> Result<Vec<(ChannelId, DateTime<Utc>)>, StoreError>;
    /// Takes or renews the lease on `channel` for `holder` until `until`
    /// (one dispatcher per channel across instances); true when `holder`
    /// holds it. Written at once, outside the event writer.
    async fn channel_lease(
        &self,
        channel: &ChannelId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The updates of `channel` the channel accepted and acknowledges later,
    /// oldest first.
    async fn outbox_accepted(
        &self,
        channel: &ChannelId,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// Makes due again what holders other than `holder` left in flight on
    /// `channel` (after `holder` took the channel's lease over); updates
    /// the channel already accepted stay with the tracker.
    async fn outbox_release_in_flight(
        &self,
        channel: &ChannelId,
        holder: &str,
    ) -> Result<u64, StoreError>;
    /// Gives the lease up (a stopping instance lets another take over now).
    async fn channel_lease_release(
        &self,
        channel: &ChannelId,
        holder: &str,
    ) -> Result<(), StoreError>;
    /// The order-poll cursor of `channel`.
    async fn poll_cursor(&self, channel: &ChannelId) -> Result<Option<String>, StoreError>;
    /// Moves the order-poll cursor (only while `holder` holds the lease).
    async fn set_poll_cursor(
        &self,
        channel: &ChannelId,
        holder: &str,
        cursor: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Sends a dead letter's listing again (from its latest desired state).
    async fn dead_letter_retry(&self, id: i64) -> Result<bool, StoreError>;
    /// Drops a dead letter: its update is given up (a later change is sent).
    async fn dead_letter_discard(&self, id: i64) -> Result<bool, StoreError>;
    /// Sends again every listing of `channel` parked by a transient failure
    /// (and drops those letters); returns how many listings went back in line.
    async fn dead_letters_revive(
        &self,
        channel: &ChannelId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// A channel's own count moves as outbox updates.
pub(crate) fn channel_moves(
    channel: &ChannelId,
    moves: Vec<(Sku, Option<i64>)>,
    at: DateTime<Utc>,
) -> Vec<OutboxUpdate> {
    moves
        .into_iter()
        .map(|(sku, delta)| OutboxUpdate::ChannelMoved {
            channel: channel.clone(),
            sku,
            delta,
            at,
        })
        .collect()
}

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// A desired state computed in a writer transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DesiredWrite {
    pub channel: ChannelId,
    pub sku: Sku,
    pub state: ListingState,
    pub rules_version: Option<u32>,
    /// False when only the rules version moved (nothing to send).
    pub value_changed: bool,
    /// The row was unsent when the refresh read it (new and clean rows
    /// are not): the write takes one statement either way.
    pub lagging: bool,
    pub caused_seq: Option<u64>,
    pub caused_at: DateTime<Utc>,
}

/// A listing's stored desired state as the refresh reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredDesired {
    pub state: ListingState,
    pub rules_version: Option<u32>,
    /// Unsent (`dirty_since_ms` set): a new state leaves its lag alone.
    pub lagging: bool,
}

/// What the writer reads and writes of `listing_state`.
#[allow(async_fn_in_trait)]
pub(crate) trait DesiredStates: AvailabilityReads {
    /// Stored desired state and rules version of the listings `keys` (of
    /// the SKUs `skus`: an adapter may look up by either).
    async fn stored_desired(
        &mut self,
        skus: &[Sku],
        keys: &[(ChannelId, Sku)],
    ) -> Result<BTreeMap<(ChannelId, Sku), StoredDesired>, StoreError>;
    async fn write_desired(
        &mut self,
        rows: &[DesiredWrite],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Applies what the dispatcher recorded (inside the caller's transaction).
    async fn record_outbox(&mut self, updates: &[OutboxUpdate]) -> Result<(), StoreError>;
    /// The setup generation (moves with channels, locations, kits, rules).
    async fn setup_generation(&mut self) -> Result<i64, StoreError>;
    /// The setup kept from an earlier transaction, with its generation.
    fn setup_cache(&mut self) -> &mut Option<(i64, Arc<LoadedSetup>)>;
    /// Listed SKUs after `after` (whole-catalog refresh).
    async fn listed_after(
        &mut self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<Sku>, StoreError>;
}

/// The setup, loaded again only when its generation moved (loading it
/// reads and validates every kit definition and the rules: too much for
/// every group or page on a large catalog).
pub(crate) async fn current_setup<D: DesiredStates>(
    db: &mut D,
) -> Result<Arc<LoadedSetup>, StoreError> {
    let generation = db.setup_generation().await?;
    if let Some((cached, loaded)) = db.setup_cache() {
        if *cached == generation {
            return Ok(loaded.clone());
        }
    }
    let setup = Setup::load(&*db).await?;
    let rules = crate::availability::active_rules(&*db, &setup).await?;
    let loaded = Arc::new(LoadedSetup { setup, rules });
    *db.setup_cache() = Some((generation, loaded.clone()));
    Ok(loaded)
}

/// The SKUs whose listings an applied group may have moved, with the
/// earliest ledger entry that touched each: every SKU an entry changed or
/// named (inbound lines move ETAs).
pub(crate) fn touched_skus(entries: &[LedgerEntry]) -> BTreeMap<Sku, (u64, DateTime<Utc>)> {
    let mut out: BTreeMap<Sku, (u64, DateTime<Utc>)> = BTreeMap::new();
    for entry in entries {
        let named = entry.event.kind.skus().into_iter().cloned();
        let changed = entry.changes.iter().map(|c| c.sku.clone());
        for sku in named.chain(changed) {
            out.entry(sku).or_insert((entry.seq, entry.received_at));
        }
    }
    out
}

/// Recomputes the listings of `touched` (and the kits and components they
/// move) and writes the ones whose state or rules version changed. Runs on
/// the writer's connection inside the caller's transaction.
pub(crate) async fn refresh<D: DesiredStates>(
    db: &mut D,
    touched: &BTreeMap<Sku, (u64, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    if touched.is_empty() {
        return Ok(0);
    }
    let loaded = current_setup(db).await?;
    let (setup, rules) = (&loaded.setup, &loaded.rules);
    // No enabled channel, no listing to compute: skip the stock reads (a
    // channel enabled later recomputes every listing).
    if setup.channels.is_empty() {
        return Ok(0);
    }
    let mut causes: BTreeMap<Sku, (u64, DateTime<Utc>)> = BTreeMap::new();
    for (sku, cause) in touched {
        for affected in setup.graph.affected_skus(sku) {
            let entry = causes.entry(affected).or_insert(*cause);
            if cause.0 < entry.0 {
                *entry = *cause;
            }
        }
    }
    let skus: Vec<Sku> = causes.keys().cloned().collect();
    refresh_skus(db, setup, rules, &skus, |sku| causes.get(sku).copied(), now).await
}

/// Recomputes the listings of `skus` (a listing or kit definition changed).
pub(crate) async fn refresh_skus_now<D: DesiredStates>(
    db: &mut D,
    skus: &[Sku],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let loaded = current_setup(db).await?;
    refresh_skus(db, &loaded.setup, &loaded.rules, skus, |_| None, now).await
}

/// Recomputes every listing (after a rules, channel, listing or kit change,
/// and at start-up), page by page; returns how many rows were written.
pub(crate) async fn refresh_page<D: DesiredStates>(
    db: &mut D,
    after: Option<&Sku>,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<(usize, Option<Sku>), StoreError> {
    let skus = db.listed_after(after, limit).await?;
    if skus.is_empty() {
        return Ok((0, None));
    }
    let loaded = current_setup(db).await?;
    let written = refresh_skus(db, &loaded.setup, &loaded.rules, &skus, |_| None, now).await?;
    let next = if skus.len() < limit as usize {
        None
    } else {
        skus.last().cloned()
    };
    Ok((written, next))
}

/// Recomputes the listings of `skus`, `REFRESH_PAGE` SKUs at a time, in
/// the order given (key order): a page's stock, listings and stored states
/// are held in memory, not all (a listing import's chunk is 50,000 SKUs),
/// and the pages of `listing_state` a page's read of stored states brings
/// into the writer's cache are still there when its new states are written
/// (a group of 20,000 events touches more pages than that cache holds).
async fn refresh_skus<D: DesiredStates>(
    db: &mut D,
    setup: &Setup,
    rules: &RuleSet,
    skus: &[Sku],
    cause_of: impl Fn(&Sku) -> Option<(u64, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut written = 0;
    for page in skus.chunks(REFRESH_PAGE as usize) {
        written += refresh_page_of(db, setup, rules, page, &cause_of, now).await?;
    }
    Ok(written)
}

async fn refresh_page_of<D: DesiredStates>(
    db: &mut D,
    setup: &Setup,
    rules: &RuleSet,
    skus: &[Sku],
    cause_of: &impl Fn(&Sku) -> Option<(u64, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let data = StockData::load(&*db, setup, skus, &[rules], now).await?;
    let computed = data.compute_states(setup, &rules.rules, now.date_naive(), now);
    let keys: Vec<(ChannelId, Sku)> = computed.keys().cloned().collect();
    let stored = db.stored_desired(skus, &keys).await?;
    let mut writes = Vec::new();
    for ((channel, sku), result) in computed {
        let old = stored.get(&(channel.clone(), sku.clone()));
        let value_changed = old.is_none_or(|old| old.state != result.state);
        let version_changed = old.is_none_or(|old| old.rules_version != rules.version);
        if !value_changed && !version_changed {
            continue;
        }
        let cause = cause_of(&sku);
        writes.push(DesiredWrite {
            channel,
            sku,
            state: result.state,
            rules_version: rules.version,
            value_changed,
            lagging: old.is_some_and(|old| old.lagging),
            caused_seq: cause.map(|c| c.0),
            caused_at: cause.map_or(now, |c| c.1),
        });
    }
    db.write_desired(&writes, now).await?;
    Ok(writes.len())
}

/// A listing state as `listing_state` keeps it (`desired`, `pushed`): the
/// API's form without its empty fields. Every change of a listing rewrites
/// its row, and a row is about a quarter smaller without `"eta":null` and
/// `"ship_window_days":null`; fewer pages to write per group. Reads parse
/// both forms (a missing optional field is `None`).
pub(crate) fn state_json(state: &ListingState) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct Stored<'a> {
        quantity: i64,
        availability: stockd_core::availability::Availability,
        #[serde(skip_serializing_if = "Option::is_none")]
        eta: Option<&'a chrono::NaiveDate>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ship_window_days: Option<(u32, u32)>,
    }
    serde_json::to_string(&Stored {
        quantity: state.quantity,
        availability: state.availability,
        eta: state.eta.as_ref(),
        ship_window_days: state.ship_window_days,
    })
}

/// SKUs a refresh takes per transaction.
pub(crate) const REFRESH_PAGE: u32 = 1_000;

// ----- SQL shared by both dialects ------------------------------------------

pub(crate) const ROW_COLUMNS: &str = "channel, sku, desired, rules_version, desired_gen, \
     caused_seq, caused_at_ms, dirty_since_ms, sent_gen, pushed, pushed_at_ms, channel_quantity, \
     recent_pushes, attempts, next_attempt_ms, last_error, parked, channel_gen, parked_gen, \
     protective, unacked_since_ms, in_flight_ref, in_flight_sent, in_flight_at_ms";

pub(crate) const INSERT_DESIRED: &str = "INSERT INTO listing_state \
     (channel, sku, desired, rules_version, desired_gen, caused_seq, caused_at_ms, dirty_since_ms, \
       unacked_since_ms) \
     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?6) \
     ON CONFLICT (channel, sku) DO UPDATE SET desired = excluded.desired, \
       rules_version = excluded.rules_version, \
       desired_gen = listing_state.desired_gen + 1, caused_seq = excluded.caused_seq, \
       caused_at_ms = excluded.caused_at_ms, \
       dirty_since_ms = COALESCE(listing_state.dirty_since_ms, excluded.dirty_since_ms), \
       unacked_since_ms = COALESCE(listing_state.unacked_since_ms, excluded.unacked_since_ms)";

/// SQLite, in place of `INSERT_DESIRED` for a row the refresh read as
/// lagging: a new desired state leaves `dirty_since_ms` alone. SQLite
/// rewrites the entry of every index whose key or condition names a column
/// an `UPDATE` sets, even to the value it had; on a catalog under load most
/// rows a group moves are still lagging, and their index entries would cost
/// a page each. Clean and new rows take `INSERT_DESIRED` alone (one search,
/// not a search that finds nothing and then another).
pub(crate) const UPDATE_LAGGING_DESIRED: &str = "UPDATE listing_state SET desired = ?3, \
     rules_version = ?4, desired_gen = desired_gen + 1, caused_seq = ?5, caused_at_ms = ?6, \
     unacked_since_ms = COALESCE(unacked_since_ms, ?6) \
     WHERE sku = ?2 AND channel = ?1 AND dirty_since_ms IS NOT NULL";

/// PostgreSQL: `INSERT_DESIRED` for many listings at once (distinct keys).
pub(crate) const PG_INSERT_DESIRED_MANY: &str = "INSERT INTO listing_state \
     (channel, sku, desired, rules_version, desired_gen, caused_seq, caused_at_ms, dirty_since_ms, \
       unacked_since_ms) \
     SELECT c, s, d, v, 1, q, a, ?7, a \
     FROM UNNEST(?1::text[], ?2::text[], ?3::text[], ?4::int8[], ?5::int8[], ?6::int8[]) \
       AS t(c, s, d, v, q, a) \
     ON CONFLICT (channel, sku) DO UPDATE SET desired = excluded.desired, \
       rules_version = excluded.rules_version, \
       desired_gen = listing_state.desired_gen + 1, caused_seq = excluded.caused_seq, \
       caused_at_ms = excluded.caused_at_ms, \
       dirty_since_ms = COALESCE(listing_state.dirty_since_ms, excluded.dirty_since_ms), \
       unacked_since_ms = COALESCE(listing_state.unacked_since_ms, excluded.unacked_since_ms)";

/// PostgreSQL: `UPDATE_VERSION` for many listings at once.
pub(crate) const PG_UPDATE_VERSION_MANY: &str = "UPDATE listing_state l SET rules_version = t.v \
     FROM UNNEST(?1::text[], ?2::text[], ?3::int8[]) AS t(c, s, v) \
     WHERE l.channel = t.c AND l.sku = t.s";

pub(crate) const UPDATE_VERSION: &str =
    "UPDATE listing_state SET rules_version = ?3 WHERE channel = ?1 AND sku = ?2";

/// Due rows of one class (protective or not), oldest first. A parked
/// listing is due again once it has a newer desired state than the one
/// parked. Each class is read on its own, in the order of an index
/// (SQLite: `listing_state_protective`, which holds only protective rows,
/// and `listing_state_dirty`; PostgreSQL: `listing_state_due`), and the
/// rest only when the protective rows leave room: a channel with many
/// protective rows lagging never walks past them to find the others.
pub(crate) fn due_sql(protective: bool) -> String {
    let class = u8::from(protective);
    format!(
        "SELECT {ROW_COLUMNS} FROM listing_state WHERE channel = ?1 \
         AND dirty_since_ms IS NOT NULL AND protective = {class} \
         AND (parked = 0 OR desired_gen > parked_gen) \
         AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?2) \
         ORDER BY dirty_since_ms, sku LIMIT ?3"
    )
}

/// Due rows: protective updates first (`protective`, read first), then the
/// rest. The two reads may see different moments: a listing read in both
/// is taken once.
pub(crate) fn due_rows(mut protective: Vec<OutboxRow>, rest: Vec<OutboxRow>) -> Vec<OutboxRow> {
    let taken: std::collections::HashSet<Sku> = protective.iter().map(|r| r.sku.clone()).collect();
    protective.extend(rest.into_iter().filter(|r| !taken.contains(&r.sku)));
    protective
}

/// The oldest lag (`dirty_since_ms`) of each channel's unsent rows.
pub(crate) const OLDEST_UNSENT: &str = "SELECT channel, MIN(dirty_since_ms) FROM listing_state \
     WHERE dirty_since_ms IS NOT NULL GROUP BY channel ORDER BY channel";

pub(crate) fn page_sql(channel: bool, pending_only: bool) -> String {
    let mut sql =
        format!("SELECT {ROW_COLUMNS} FROM listing_state WHERE (channel, sku) > (?1, ?2)");
    if channel {
        sql.push_str(" AND channel = ?4");
    }
    if pending_only {
        sql.push_str(" AND (dirty_since_ms IS NOT NULL OR parked <> 0)");
    }
    sql.push_str(" ORDER BY channel, sku LIMIT ?3");
    sql
}

/// A channel's accepted updates, oldest first (`listing_state_tracked`).
pub(crate) fn accepted_sql() -> String {
    format!(
        "SELECT {ROW_COLUMNS} FROM listing_state WHERE channel = ?1 AND in_flight_ref IS NOT NULL \
         ORDER BY in_flight_at_ms LIMIT ?2"
    )
}

pub(crate) fn rows_sql() -> String {
    format!("SELECT {ROW_COLUMNS} FROM listing_state WHERE channel = ?1 AND sku = ?2")
}

/// Acknowledged: the channel holds `pushed` for generation `gen`. The row is
/// clean unless a newer generation arrived meanwhile or the channel's own
/// count moved since the dispatcher read the row (`?8`: the `channel_gen` it
/// saw); such a move already marked the row dirty and keeps its count. The
/// latency start moves to the cause of the next generation when exactly one
/// newer arrived (its cause is the row's), else stays (conservative). An
/// acknowledged state newer than a parked one ends the parking.
pub(crate) const ACK: &str = "UPDATE listing_state SET \
       pushed = CASE WHEN ?3 >= sent_gen THEN ?4 ELSE pushed END, \
       pushed_at_ms = CASE WHEN ?3 >= sent_gen THEN ?5 ELSE pushed_at_ms END, \
       channel_quantity = CASE WHEN ?3 >= sent_gen AND channel_gen = ?8 \
         THEN COALESCE(?6, channel_quantity) ELSE channel_quantity END, \
       recent_pushes = CASE WHEN ?3 >= sent_gen THEN ?7 ELSE recent_pushes END, \
       attempts = 0, next_attempt_ms = NULL, last_error = NULL, in_flight_holder = NULL, \
       in_flight_ref = NULL, in_flight_sent = NULL, in_flight_at_ms = NULL, \
       dirty_since_ms = CASE WHEN desired_gen <= ?3 AND channel_gen = ?8 THEN NULL \
         ELSE dirty_since_ms END, \
       unacked_since_ms = CASE WHEN desired_gen <= ?3 AND channel_gen = ?8 THEN NULL \
         WHEN desired_gen = ?3 + 1 THEN caused_at_ms \
         WHEN desired_gen > ?3 + 1 THEN unacked_since_ms ELSE ?5 END, \
       parked = CASE WHEN ?3 > parked_gen THEN 0 ELSE parked END, \
       sent_gen = CASE WHEN sent_gen > ?3 THEN sent_gen ELSE ?3 END \
     WHERE channel = ?1 AND sku = ?2";

/// A failed attempt; a state newer than a parked one leaves the parking
/// (its attempts count from here).
pub(crate) const FAILED: &str = "UPDATE listing_state SET attempts = ?3, next_attempt_ms = ?4, \
     last_error = ?5, in_flight_holder = NULL, in_flight_ref = NULL, in_flight_sent = NULL, \
     in_flight_at_ms = NULL, parked = CASE WHEN desired_gen > parked_gen THEN 0 ELSE parked END \
     WHERE channel = ?1 AND sku = ?2";

pub(crate) const DEFERRED: &str = "UPDATE listing_state SET next_attempt_ms = ?3, \
     last_error = COALESCE(?4, last_error), in_flight_holder = NULL, in_flight_ref = NULL, \
     in_flight_sent = NULL, in_flight_at_ms = NULL \
     WHERE channel = ?1 AND sku = ?2";

pub(crate) const IN_FLIGHT: &str = "UPDATE listing_state SET next_attempt_ms = ?3, \
     in_flight_holder = ?4, in_flight_ref = NULL, in_flight_sent = NULL, in_flight_at_ms = NULL \
     WHERE channel = ?1 AND sku = ?2";

/// The channel accepted the update: kept for the tracker.
pub(crate) const ACCEPTED: &str = "UPDATE listing_state SET in_flight_ref = ?3, \
     in_flight_sent = ?4, in_flight_at_ms = ?5, next_attempt_ms = ?6 \
     WHERE channel = ?1 AND sku = ?2";

/// A new lease holder takes over what another instance left in flight.
pub(crate) const RELEASE_IN_FLIGHT: &str = "UPDATE listing_state SET next_attempt_ms = NULL, \
     in_flight_holder = NULL WHERE channel = ?1 AND in_flight_holder IS NOT NULL \
     AND in_flight_holder <> ?2 AND in_flight_ref IS NULL";

pub(crate) const CHANNEL_QUANTITY: &str =
    "UPDATE listing_state SET channel_quantity = ?3 WHERE channel = ?1 AND sku = ?2";

/// The channel's own count moved: the listing is looked at again (the
/// dispatcher sends only if the channel now differs from the desired state).
pub(crate) const CHANNEL_MOVED: &str = "UPDATE listing_state SET channel_quantity = \
     CASE WHEN CAST(?3 AS BIGINT) IS NULL THEN NULL ELSE channel_quantity + CAST(?3 AS BIGINT) END, \
     channel_gen = channel_gen + 1, \
     dirty_since_ms = COALESCE(dirty_since_ms, ?4), \
     unacked_since_ms = COALESCE(unacked_since_ms, ?4) \
     WHERE channel = ?1 AND sku = ?2";

pub(crate) const PARK: &str = "UPDATE listing_state SET parked = 1, attempts = ?3, \
     last_error = ?4, parked_gen = ?5, in_flight_holder = NULL, next_attempt_ms = NULL, \
     in_flight_ref = NULL, in_flight_sent = NULL, in_flight_at_ms = NULL \
     WHERE channel = ?1 AND sku = ?2";

pub(crate) const INSERT_DEAD: &str = "INSERT INTO dead_letters (channel, sku, desired_gen, \
     desired, code, message, status, body, attempts, created_at_ms, transient) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

pub(crate) const DEAD_PAGE: &str = "SELECT id, channel, sku, desired_gen, desired, code, message, \
     status, body, attempts, created_at_ms, \
     CAST(CASE WHEN EXISTS (SELECT 1 FROM listing_state l WHERE l.channel = d.channel \
       AND l.sku = d.sku AND l.desired_gen > d.desired_gen) THEN 1 ELSE 0 END AS BIGINT), \
     transient FROM dead_letters d WHERE id > ?1 ORDER BY id LIMIT ?2";

pub(crate) const DEAD_ONE: &str = "SELECT channel, sku FROM dead_letters WHERE id = ?1";

pub(crate) const DEAD_DELETE: &str = "DELETE FROM dead_letters WHERE id = ?1";

/// Retry from the dead-letter queue: back in line now, attempts reset.
pub(crate) const UNPARK_RETRY: &str = "UPDATE listing_state SET parked = 0, attempts = 0, \
     next_attempt_ms = NULL, dirty_since_ms = COALESCE(dirty_since_ms, ?3) \
     WHERE channel = ?1 AND sku = ?2";

/// Revival of a channel's transient dead letters (the channel acknowledges
/// pushes again): their parked listings go back in line, unless a permanent
/// letter keeps one parked ...
pub(crate) const REVIVE_TRANSIENT: &str = "UPDATE listing_state SET parked = 0, attempts = 0, \
     next_attempt_ms = NULL, dirty_since_ms = COALESCE(dirty_since_ms, ?2) \
     WHERE channel = ?1 AND parked = 1 \
     AND sku IN (SELECT sku FROM dead_letters WHERE channel = ?1 AND transient = 1) \
     AND NOT EXISTS (SELECT 1 FROM dead_letters p WHERE p.channel = ?1 \
       AND p.sku = listing_state.sku AND p.transient = 0)";

/// ... and the transient letters of listings no longer parked are dropped.
pub(crate) const DROP_REVIVED: &str = "DELETE FROM dead_letters WHERE channel = ?1 \
     AND transient = 1 AND NOT EXISTS (SELECT 1 FROM listing_state l \
       WHERE l.channel = ?1 AND l.sku = dead_letters.sku AND l.parked = 1)";

/// Discard: the update is given up; the listing is clean until it changes.
pub(crate) const UNPARK_DISCARD: &str = "UPDATE listing_state SET parked = 0, attempts = 0, \
     next_attempt_ms = NULL, sent_gen = desired_gen, dirty_since_ms = NULL, \
     unacked_since_ms = NULL \
     WHERE channel = ?1 AND sku = ?2";

/// Takes or renews a channel's lease: succeeds (one row) when nobody holds
/// it, `?2` holds it, or the holder's lease ran out.
pub(crate) const LEASE_TAKE: &str = "INSERT INTO channel_leases (channel, holder, expires_at_ms) \
     VALUES (?1, ?2, ?3) ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, \
     expires_at_ms = excluded.expires_at_ms \
     WHERE channel_leases.holder = excluded.holder OR channel_leases.expires_at_ms < ?4";

pub(crate) const LEASE_RELEASE: &str =
    "UPDATE channel_leases SET expires_at_ms = 0 WHERE channel = ?1 AND holder = ?2";

pub(crate) const POLL_CURSOR: &str = "SELECT poll_cursor FROM channel_leases WHERE channel = ?1";

/// Only the lease holder moves the cursor — or any caller while nobody holds
/// the lease (`?4`: now, unix ms). One process on SQLite takes no lease: its
/// cursor row is made here, and a restarted process (another holder name)
/// moves it on.
pub(crate) const SET_POLL_CURSOR: &str =
    "INSERT INTO channel_leases (channel, holder, expires_at_ms, poll_cursor) VALUES (?1, ?2, 0, ?3) \
     ON CONFLICT (channel) DO UPDATE SET poll_cursor = excluded.poll_cursor \
     WHERE channel_leases.holder = excluded.holder OR channel_leases.expires_at_ms < ?4";

/// `?N` → `$N` for PostgreSQL.
pub(crate) fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}

/// The raw columns of one `listing_state` row, in `ROW_COLUMNS` order.
pub(crate) struct RawRow {
    pub channel: String,
    pub sku: String,
    pub desired: String,
    pub rules_version: Option<i64>,
    pub desired_gen: i64,
    pub caused_seq: Option<i64>,
    pub caused_at_ms: i64,
    pub dirty_since_ms: Option<i64>,
    pub sent_gen: i64,
    pub pushed: Option<String>,
    pub pushed_at_ms: Option<i64>,
    pub channel_quantity: Option<i64>,
    pub recent_pushes: String,
    pub attempts: i64,
    pub next_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
    pub parked: i64,
    pub channel_gen: i64,
    pub parked_gen: i64,
    pub protective: i64,
    pub unacked_since_ms: Option<i64>,
    pub in_flight_ref: Option<String>,
    pub in_flight_sent: Option<String>,
    pub in_flight_at_ms: Option<i64>,
}

fn u(raw: i64) -> Result<u64, StoreError> {
    u64::try_from(raw).map_err(crate::rows::corrupt)
}

impl RawRow {
    pub(crate) fn into_row(self) -> Result<OutboxRow, StoreError> {
        let recent: Vec<i64> = serde_json::from_str(&self.recent_pushes)?;
        Ok(OutboxRow {
            channel: crate::rows::parse_id(self.channel, ChannelId::parse)?,
            sku: crate::rows::parse_id(self.sku, Sku::parse)?,
            desired: serde_json::from_str(&self.desired)?,
            rules_version: self
                .rules_version
                .map(|v| u32::try_from(v).map_err(crate::rows::corrupt))
                .transpose()?,
            desired_gen: u(self.desired_gen)?,
            caused_seq: self.caused_seq.map(u).transpose()?,
            caused_at: from_ms(self.caused_at_ms),
            dirty_since: self.dirty_since_ms.map(from_ms),
            sent_gen: u(self.sent_gen)?,
            pushed: self
                .pushed
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            pushed_at: self.pushed_at_ms.map(from_ms),
            channel_quantity: self.channel_quantity,
            recent_pushes: recent.into_iter().map(from_ms).collect(),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: self.next_attempt_ms.map(from_ms),
            last_error: self.last_error,
            parked: self.parked != 0,
            channel_gen: u(self.channel_gen)?,
            parked_gen: u(self.parked_gen)?,
            protective: self.protective != 0,
            unacked_since: self.unacked_since_ms.map(from_ms),
            accepted: match (
                self.in_flight_ref,
                self.in_flight_sent,
                self.in_flight_at_ms,
            ) {
                (Some(reference), Some(sent), Some(at)) => Some(Accepted {
                    reference,
                    sent: serde_json::from_str(&sent)?,
                    at: from_ms(at),
                }),
                _ => None,
            },
        })
    }
}

/// The raw columns of a dead letter, in `DEAD_COLUMNS` order.
pub(crate) struct RawDead {
    pub id: i64,
    pub channel: String,
    pub sku: String,
    pub desired_gen: i64,
    pub desired: String,
    pub code: String,
    pub message: String,
    pub status: Option<i64>,
    pub body: Option<String>,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub superseded: i64,
    pub transient: i64,
}

impl RawDead {
    pub(crate) fn into_letter(self) -> Result<DeadLetter, StoreError> {
        Ok(DeadLetter {
            id: self.id,
            channel: crate::rows::parse_id(self.channel, ChannelId::parse)?,
            sku: crate::rows::parse_id(self.sku, Sku::parse)?,
            desired_gen: u(self.desired_gen)?,
            desired: serde_json::from_str(&self.desired)?,
            code: self.code,
            message: self.message,
            status: self.status.and_then(|s| u16::try_from(s).ok()),
            body: self.body,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            created_at: from_ms(self.created_at_ms),
            superseded: self.superseded != 0,
            transient: self.transient != 0,
        })
    }
}

/// Push times within the budget window, plus `at` when counted, as stored.
pub(crate) fn recent_pushes_json(
    before: &[DateTime<Utc>],
    at: DateTime<Utc>,
    counted: bool,
) -> Result<String, StoreError> {
    let window = chrono::Duration::hours(stockd_core::availability::budget::BUDGET_WINDOW_HOURS);
    let mut kept: Vec<i64> = before
        .iter()
        .filter(|t| **t + window > at)
        .map(|t| ms(*t))
        .collect();
    if counted {
        kept.push(ms(at));
    }
    Ok(serde_json::to_string(&kept)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use stockd_core::availability::Availability;

    fn due(sku: &str, protective: bool) -> OutboxRow {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        OutboxRow {
            channel: ChannelId::parse("shop").unwrap(),
            sku: Sku::parse(sku).unwrap(),
            desired: ListingState {
                quantity: 1,
                availability: Availability::InStock,
                eta: None,
                ship_window_days: None,
            },
            rules_version: None,
            desired_gen: 1,
            caused_seq: None,
            caused_at: at,
            dirty_since: Some(at),
            sent_gen: 0,
            pushed: None,
            pushed_at: None,
            channel_quantity: None,
            channel_gen: 0,
            recent_pushes: Vec::new(),
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            parked: false,
            parked_gen: 0,
            protective,
            unacked_since: Some(at),
            accepted: None,
        }
    }

    #[test]
    fn due_rows_put_protective_ones_first_and_take_a_listing_read_twice_once() {
        // The second read may see a listing the first saw as protective
        // and that has since turned not protective (or the other way).
        let protective = vec![due("B", true), due("A", true)];
        let rest = vec![due("C", false), due("A", false), due("D", false)];
        let rows = due_rows(protective, rest);
        let order: Vec<(&str, bool)> = rows
            .iter()
            .map(|r| (r.sku.as_str(), r.protective))
            .collect();
        assert_eq!(
            order,
            [("B", true), ("A", true), ("C", false), ("D", false)]
        );
        assert!(due_rows(Vec::new(), Vec::new()).is_empty());
        assert_eq!(due_rows(Vec::new(), vec![due("C", false)]).len(), 1);
    }

    #[test]
    fn a_stored_state_leaves_out_empty_fields_and_reads_back_whole() {
        let plain = ListingState {
            quantity: 7,
            availability: Availability::InStock,
            eta: None,
            ship_window_days: None,
        };
        let backorder = ListingState {
            quantity: 0,
            availability: Availability::Backorder,
            eta: NaiveDate::from_ymd_opt(2026, 12, 24),
            ship_window_days: Some((3, 5)),
        };
        let stored = state_json(&plain).unwrap();
        assert_eq!(stored, r#"{"quantity":7,"availability":"in_stock"}"#);
        assert_eq!(
            serde_json::from_str::<ListingState>(&stored).unwrap(),
            plain
        );
        let stored = state_json(&backorder).unwrap();
        assert_eq!(
            serde_json::from_str::<ListingState>(&stored).unwrap(),
            backorder
        );
        // Rows written before this form (the API's, with nulls) read the same.
        let api_form = serde_json::to_string(&plain).unwrap();
        assert!(api_form.contains(r#""eta":null"#));
        assert_eq!(
            serde_json::from_str::<ListingState>(&api_form).unwrap(),
            plain
        );
    }
}
