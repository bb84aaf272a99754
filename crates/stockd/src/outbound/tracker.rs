//! The tracker: for a channel that acknowledges updates later (bol's
//! process statuses, Amazon's listings feeds), one task follows what the
//! channel accepted while the worker goes on sending within the channel's
//! rate limits. The dispatcher records each accepted update in the outbox
//! with the channel's reference, what was sent and when
//! (`OutboxUpdate::Accepted`); every `Connector::track_interval` the
//! tracker reads the channel's accepted updates, oldest first, asks the
//! channel about them in one go (`Connector::track`: bol's bulk
//! process-status read, Amazon's `getFeed` and processing report) and
//! records success (latency up to this real acknowledgement), failure
//! (retry or dead letter, as a push's) or expiry (an update still pending
//! after `Connector::track_timeout` is sent again). Everything it needs is
//! in the database, so what was accepted before a restart or a lease
//! takeover is resolved here, not sent a second time. Only the holder of
//! the channel's lease tracks.

use super::dispatch::{acked, push_item, Lease, Pusher};
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::{ChannelError, ErrorClass, ItemOutcome, TrackedItem};
use stockd_store::outbox::{Accepted, OutboxRow};
use stockd_store::StoreError;
use tokio::sync::watch;

/// Accepted updates one pass asks about at most.
const TRACK_ROWS_MAX: u32 = 5_000;
/// The shortest time between two passes.
const TRACK_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// Follows `pusher`'s channel's accepted updates until `stopped`.
pub(super) async fn run(
    pusher: Arc<Pusher>,
    lease: Arc<Lease>,
    mut stopped: watch::Receiver<bool>,
) {
    let interval = pusher.connector.track_interval().max(TRACK_INTERVAL_MIN);
    loop {
        if *stopped.borrow() {
            break;
        }
        if lease.held(pusher.now()) {
            if let Err(e) = pass(&pusher).await {
                tracing::warn!(channel = %pusher.channel, error = %e, "tracking accepted updates failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// The row as it was sent: the accepted state is what an acknowledgement
/// acknowledges (a newer desired state stays due after it).
fn as_sent(row: &OutboxRow, accepted: &Accepted) -> OutboxRow {
    OutboxRow {
        desired: accepted.sent.state.clone(),
        desired_gen: accepted.sent.gen,
        channel_gen: accepted.sent.channel_gen,
        protective: accepted.sent.protective,
        ..row.clone()
    }
}

/// One pass: asks the channel about its accepted updates and records what
/// it decided; returns how many were resolved.
pub(super) async fn pass(pusher: &Pusher) -> Result<usize, StoreError> {
    let rows = pusher
        .store
        .outbox_accepted(&pusher.channel, TRACK_ROWS_MAX)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let skus: Vec<_> = rows.iter().map(|r| r.sku.clone()).collect();
    let externals = pusher.externals(&skus).await?;
    let mut updates = Vec::new();
    let mut tracked = Vec::new();
    let mut sent_rows = Vec::new();
    for row in &rows {
        let Some(accepted) = &row.accepted else {
            continue;
        };
        let sent = as_sent(row, accepted);
        let Some(external) = externals.get(&row.sku) else {
            // The listing was removed: nothing to follow; the row is settled.
            updates.push(acked(&sent, &sent.desired, None, pusher.now(), false));
            continue;
        };
        tracked.push(TrackedItem {
            reference: accepted.reference.clone(),
            item: push_item(&sent, external),
        });
        sent_rows.push((sent, accepted.at));
    }
    let answers = if tracked.is_empty() {
        Vec::new()
    } else {
        match pusher.connector.track(&tracked).await {
            Ok(answers) if answers.len() == tracked.len() => answers,
            Ok(answers) => {
                tracing::warn!(channel = %pusher.channel, answers = answers.len(),
                    asked = tracked.len(), "the tracker's answers do not match its questions");
                vec![None; tracked.len()]
            }
            Err(e) => {
                tracing::warn!(channel = %pusher.channel, error = %e,
                    "asking the channel about accepted updates failed");
                vec![None; tracked.len()]
            }
        }
    };
    let now = pusher.now();
    let timeout = chrono::Duration::from_std(pusher.connector.track_timeout())
        .unwrap_or(chrono::Duration::MAX);
    let mut resolved = 0;
    for (((sent, at), answer), item) in sent_rows.iter().zip(answers).zip(&tracked) {
        let outcome = match answer {
            Some(outcome) => outcome,
            None if now - *at > timeout => ItemOutcome::Failed(ChannelError::new(
                ErrorClass::Retryable,
                "pending",
                format!(
                    "{} still pending {} s after the channel accepted it; sent again",
                    item.reference,
                    (now - *at).num_seconds()
                ),
            )),
            None => continue,
        };
        resolved += 1;
        pusher.outcome_updates(sent, &item.item, outcome, now, &mut updates);
    }
    if !updates.is_empty() && !pusher.record(updates).await {
        tracing::error!(channel = %pusher.channel,
            "tracked outcomes not recorded; the tracker asks again");
    }
    Ok(resolved)
}
