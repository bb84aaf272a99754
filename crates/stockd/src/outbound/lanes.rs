//! Which pushes a dispatcher round starts, from the rows it read (the
//! functional core of the dispatcher's lanes; `dispatch` does the I/O).
//!
//! - **Fast**: protective updates, in pushes of the channel's fast batch.
//! - **Bulk**: the other updates (and protective ones the fast lane cannot
//!   take now, where the bulk path is not much slower), in pushes of the
//!   channel's bulk batch.
//! - **Spare**: on a channel whose bulk path sends small pushes on its fast
//!   path anyway (Amazon: patches up to the feed threshold), what the bulk
//!   lane does not take now (too few for a feed, or no free bulk slot)
//!   goes on the fast path while it is idle: only while no protective
//!   update waits or runs, one push at a time and fast-batch sized (it
//!   holds the fast path for about a second). An update kept out this way
//!   `OTHER_WAIT_MAX` goes anyway: it must not stay unsent while the
//!   channel takes other updates.

use chrono::{DateTime, Utc};
use std::time::Duration;
use stockd_core::availability::Availability;

/// How long an update that is not protective is kept off the fast path
/// while protective updates use it.
pub(super) const OTHER_WAIT_MAX: Duration = Duration::from_secs(30);

/// Where a push runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Fast,
    Bulk,
    Spare,
}

/// What the channel and the pushes under way allow this round.
#[derive(Debug, Clone, Copy)]
pub(super) struct LaneRoom {
    /// Items of a fast push (`Connector::fast_batch`).
    pub fast_batch: usize,
    /// Items of a bulk push (`Connector::max_batch`).
    pub bulk_batch: usize,
    /// Free push slots of each lane.
    pub free_fast: usize,
    pub free_bulk: usize,
    /// Fast pushes (protective updates) under way.
    pub fast_running: usize,
    /// Whether a spare push is under way.
    pub spare_running: bool,
    /// `Connector::bulk_takes_protective`.
    pub bulk_takes_protective: bool,
    /// `Connector::bulk_on_fast_path_up_to`.
    pub bulk_on_fast_path_up_to: usize,
}

/// Whether an update is protective on this channel: the outbox marks rows
/// that lower the quantity below the channel's count or move availability
/// away from in stock (`marked`); a channel that shows no quantity (Google)
/// is only lowered by the availability, so a smaller count is not
/// protective there.
pub(super) fn protective_here(
    marked: bool,
    carries_quantity: bool,
    desired: Availability,
    shown: Option<Availability>,
) -> bool {
    if carries_quantity {
        return marked;
    }
    desired != Availability::InStock
        && shown.unwrap_or(Availability::InStock) == Availability::InStock
}

/// The pushes to start: `protective` and `other` in the order the outbox
/// gave them (oldest first); `waiting_since` tells since when a row waits.
/// Rows not placed stay due for a later round.
pub(super) fn plan<R: Clone>(
    mut protective: Vec<R>,
    other: Vec<R>,
    room: LaneRoom,
    waiting_since: impl Fn(&R) -> DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<(Lane, Vec<R>)> {
    let fast = room.fast_batch.max(1);
    let bulk = room.bulk_batch.max(1);
    let protective_waits = !protective.is_empty() || room.fast_running > 0;
    // What the fast lane cannot take now heads the bulk lane where the bulk
    // path is not much slower; otherwise it waits for a fast slot.
    let fast_rows = fast.saturating_mul(room.free_fast).min(protective.len());
    let mut overflow = protective.split_off(fast_rows);
    if !room.bulk_takes_protective {
        overflow.clear();
    }
    let mut pushes: Vec<(Lane, Vec<R>)> = protective
        .chunks(fast)
        .map(|chunk| (Lane::Fast, chunk.to_vec()))
        .collect();
    let rows: Vec<R> = overflow.into_iter().chain(other).collect();
    let mut rest: &[R] = &rows;
    let mut bulk_started = 0;
    while !rest.is_empty() && bulk_started < room.free_bulk {
        let take = bulk.min(rest.len());
        if take <= room.bulk_on_fast_path_up_to {
            // It would go the fast path: a spare push, if any.
            break;
        }
        pushes.push((Lane::Bulk, rest[..take].to_vec()));
        rest = &rest[take..];
        bulk_started += 1;
    }
    // What the bulk lane does not take now (too small for the bulk path, or
    // no free bulk slot, e.g. while Amazon's feed limit holds them) goes on
    // an idle fast path, a little at a time.
    if rest.is_empty() || room.bulk_on_fast_path_up_to == 0 || room.spare_running {
        return pushes;
    }
    let overdue =
        rest.iter().map(&waiting_since).min().is_some_and(|since| {
            (now - since).to_std().unwrap_or(Duration::ZERO) >= OTHER_WAIT_MAX
        });
    if !protective_waits || overdue {
        pushes.push((Lane::Spare, rest[..fast.min(rest.len())].to_vec()));
    }
    pushes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_smaller_count_protects_only_where_the_channel_shows_counts() {
        use Availability::{Backorder, InStock, OutOfStock};
        // Shopify: the outbox's mark stands.
        assert!(protective_here(true, true, InStock, Some(InStock)));
        assert!(!protective_here(false, true, OutOfStock, Some(InStock)));
        // Google: 20 → 14 in stock lowers nothing a buyer sees.
        assert!(!protective_here(true, false, InStock, Some(InStock)));
        assert!(protective_here(false, false, OutOfStock, Some(InStock)));
        assert!(protective_here(true, false, Backorder, None));
        // Already out of stock there: moving to backorder lowers nothing.
        assert!(!protective_here(true, false, Backorder, Some(OutOfStock)));
    }

    /// A row: its name and how many seconds before `now` it started waiting.
    type Row = (String, i64);

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn rows(prefix: &str, n: usize, waited_s: i64) -> Vec<Row> {
        (0..n).map(|i| (format!("{prefix}{i}"), waited_s)).collect()
    }

    /// Amazon in the demo: patches of 5, feeds above 25 items, two slots.
    fn amazon_room() -> LaneRoom {
        LaneRoom {
            fast_batch: 5,
            bulk_batch: 25_000,
            free_fast: 2,
            free_bulk: 2,
            fast_running: 0,
            spare_running: false,
            bulk_takes_protective: false,
            bulk_on_fast_path_up_to: 25,
        }
    }

    fn run(protective: Vec<Row>, other: Vec<Row>, room: LaneRoom) -> Vec<(Lane, Vec<Row>)> {
        plan(
            protective,
            other,
            room,
            |row: &Row| now() - chrono::Duration::seconds(row.1),
            now(),
        )
    }

    fn lanes(pushes: &[(Lane, Vec<Row>)]) -> Vec<(Lane, usize)> {
        pushes.iter().map(|(l, r)| (*l, r.len())).collect()
    }

    #[test]
    fn a_patch_sized_bulk_push_waits_while_protective_updates_are_due() {
        let pushes = run(rows("P", 7, 1), rows("O", 20, 5), amazon_room());
        assert_eq!(lanes(&pushes), vec![(Lane::Fast, 5), (Lane::Fast, 2)]);
    }

    #[test]
    fn a_patch_sized_bulk_push_waits_while_a_protective_push_runs() {
        let room = LaneRoom {
            fast_running: 1,
            free_fast: 1,
            ..amazon_room()
        };
        let pushes = run(Vec::new(), rows("O", 20, 5), room);
        assert!(pushes.is_empty(), "{pushes:?}");
    }

    #[test]
    fn with_no_protective_update_one_fast_sized_spare_push_goes() {
        let pushes = run(Vec::new(), rows("O", 20, 5), amazon_room());
        assert_eq!(lanes(&pushes), vec![(Lane::Spare, 5)]);
        assert_eq!(pushes[0].1[0].0, "O0", "oldest first");
        let room = LaneRoom {
            spare_running: true,
            ..amazon_room()
        };
        assert!(run(Vec::new(), rows("O", 20, 5), room).is_empty());
    }

    #[test]
    fn an_update_kept_off_the_fast_path_too_long_goes_anyway() {
        let waited = OTHER_WAIT_MAX.as_secs() as i64;
        let pushes = run(rows("P", 3, 1), rows("O", 20, waited), amazon_room());
        assert_eq!(lanes(&pushes), vec![(Lane::Fast, 3), (Lane::Spare, 5)]);
    }

    #[test]
    fn with_the_bulk_slots_busy_an_idle_fast_path_takes_a_spare_push() {
        let room = LaneRoom {
            free_bulk: 0,
            ..amazon_room()
        };
        let pushes = run(Vec::new(), rows("O", 40, 1), room);
        assert_eq!(lanes(&pushes), vec![(Lane::Spare, 5)]);
        assert!(run(rows("P", 1, 1), rows("O", 40, 1), room)
            .iter()
            .all(|(lane, _)| *lane == Lane::Fast));
    }

    #[test]
    fn a_feed_sized_bulk_push_goes_beside_protective_updates() {
        let pushes = run(rows("P", 3, 1), rows("O", 40, 1), amazon_room());
        assert_eq!(lanes(&pushes), vec![(Lane::Fast, 3), (Lane::Bulk, 40)]);
    }

    #[test]
    fn protective_updates_beyond_the_fast_lane_wait_for_it_on_amazon() {
        let pushes = run(rows("P", 12, 1), Vec::new(), amazon_room());
        assert_eq!(lanes(&pushes), vec![(Lane::Fast, 5), (Lane::Fast, 5)]);
    }

    #[test]
    fn where_bulk_never_takes_the_fast_path_the_lanes_are_as_before() {
        // bol: 50 per push in both lanes, 8 slots; overflow heads the bulk lane.
        let room = LaneRoom {
            fast_batch: 50,
            bulk_batch: 50,
            free_fast: 1,
            free_bulk: 2,
            fast_running: 7,
            spare_running: false,
            bulk_takes_protective: true,
            bulk_on_fast_path_up_to: 0,
        };
        let pushes = run(rows("P", 60, 1), rows("O", 70, 1), room);
        assert_eq!(
            lanes(&pushes),
            vec![(Lane::Fast, 50), (Lane::Bulk, 50), (Lane::Bulk, 30)]
        );
        assert_eq!(pushes[1].1[0].0, "P50", "protective overflow first");
    }
}
