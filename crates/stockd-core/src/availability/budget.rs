//! The change budget: whether a listing's new desired state is pushed now or
//! held. Some channels accept only a few updates a day (Google Merchant
//! Center about two per product); a change that lowers exposure is never held,
//! because holding it is how overselling happens.

use super::{Availability, ListingState};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The rolling window the budget counts pushes over.
pub const BUDGET_WINDOW_HOURS: i64 = 24;

/// What to do with a listing's new desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum PushDecision {
    /// The channel already shows it: nothing to send.
    Unchanged,
    Push {
        reason: PushReason,
    },
    /// The budget is spent: send the (then latest) state at `until`.
    Hold {
        until: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushReason {
    /// Nothing was pushed before.
    First,
    /// Exposure goes down (or the listing goes out of stock): never held.
    Decrease,
    /// The channel has no budget.
    NoBudget,
    /// Fewer than the allowed pushes in the last 24 hours.
    WithinBudget,
}

/// Whether `desired` lowers exposure compared with what the channel shows.
pub fn lowers_exposure(desired: &ListingState, last_pushed: &ListingState) -> bool {
    desired.quantity < last_pushed.quantity
        || (desired.availability == Availability::OutOfStock
            && last_pushed.availability != Availability::OutOfStock)
}

/// Decides for one channel × sku. `recent_pushes` are the times earlier
/// pushes of this listing were sent (any order; older ones are ignored);
/// `pushes_per_day` is the channel's budget (`Rules::pushes_per_day`).
pub fn decide_push(
    recent_pushes: &[DateTime<Utc>],
    now: DateTime<Utc>,
    desired: &ListingState,
    last_pushed: Option<&ListingState>,
    pushes_per_day: Option<u32>,
) -> PushDecision {
    let Some(last_pushed) = last_pushed else {
        return PushDecision::Push {
            reason: PushReason::First,
        };
    };
    if desired == last_pushed {
        return PushDecision::Unchanged;
    }
    if lowers_exposure(desired, last_pushed) {
        return PushDecision::Push {
            reason: PushReason::Decrease,
        };
    }
    let Some(per_day) = pushes_per_day else {
        return PushDecision::Push {
            reason: PushReason::NoBudget,
        };
    };
    let window = Duration::hours(BUDGET_WINDOW_HOURS);
    // A push counts while now < pushed_at + 24 h.
    let mut in_window: Vec<DateTime<Utc>> = recent_pushes
        .iter()
        .copied()
        .filter(|at| *at + window > now)
        .collect();
    // Validation allows at least one push a day; a budget of 0 would hold forever.
    let per_day = usize::try_from(per_day.max(1)).unwrap_or(usize::MAX);
    if in_window.len() < per_day {
        return PushDecision::Push {
            reason: PushReason::WithinBudget,
        };
    }
    // Room opens once all but per_day − 1 of the pushes in the window expired.
    in_window.sort_unstable();
    let expiring = in_window[in_window.len() - per_day];
    PushDecision::Hold {
        until: expiring + window,
    }
}
