//! The cursor of an order poll that reads orders by modification time
//! (WooCommerce `modified_after`, Shopify `updated_at:>`): the newest
//! modification seen, in UTC to the second.
//!
//! Each poll reads again from a little before the cursor (`OVERLAP`): the
//! channels compare to the second and their clocks are not stockd's;
//! reading an order twice is harmless (changes carry dedup keys). A poll
//! that stopped at its page bound marks its cursor (`MORE`), and the next
//! one starts a second before it instead, so a minute with more orders than
//! one poll reads cannot hold the cursor in place.

use crate::{OrderChange, OrderPoll};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::time::Duration;

const OVERLAP: Duration = Duration::from_secs(60);
const MORE: &str = " more";
const CURSOR_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Where the previous poll left off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PollWindow {
    seen: Option<DateTime<Utc>>,
    more: bool,
}

/// A channel's timestamp: RFC 3339, or without a zone (then UTC, as
/// WooCommerce's `*_gmt` fields are).
pub(crate) fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|at| at.and_utc())
        })
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero())
}

impl PollWindow {
    pub(crate) fn parse(cursor: Option<&str>) -> PollWindow {
        let (text, more) = match cursor {
            Some(c) => match c.strip_suffix(MORE) {
                Some(at) => (Some(at), true),
                None => (Some(c), false),
            },
            None => (None, false),
        };
        PollWindow {
            seen: text.and_then(parse_utc),
            more,
        }
    }

    /// The poll reads orders modified after this moment: the cursor less
    /// the overlap (a second after a poll stopped at its bound), or
    /// `lookback` before `now` on the first poll.
    pub(crate) fn since(&self, now: DateTime<Utc>, lookback: Duration) -> DateTime<Utc> {
        match self.seen {
            Some(at) if self.more => at - chrono::Duration::seconds(1),
            Some(at) => at - chrono_of(OVERLAP),
            None => now - chrono_of(lookback),
        }
    }

    /// The newest modification so far, to fold the read orders' into.
    pub(crate) fn seen(&self) -> Option<DateTime<Utc>> {
        self.seen
    }

    /// A poll's answer: its changes, the cursor after it (`next`) and when
    /// to poll again (at once after a poll stopped at its bound).
    pub(crate) fn answer(
        changes: Vec<OrderChange>,
        newest: Option<DateTime<Utc>>,
        capped: bool,
        previous: Option<&str>,
        interval: Duration,
    ) -> OrderPoll {
        OrderPoll {
            changes,
            cursor: PollWindow::next(newest, capped, previous),
            next_poll_after: if capped { Duration::ZERO } else { interval },
        }
    }

    /// The cursor after a poll that saw `newest` and stopped at its page
    /// bound when `capped`; the previous cursor when it saw nothing.
    pub(crate) fn next(
        newest: Option<DateTime<Utc>>,
        capped: bool,
        previous: Option<&str>,
    ) -> Option<String> {
        match newest {
            Some(at) => {
                let at = at.format(CURSOR_FORMAT);
                Some(if capped {
                    format!("{at}{MORE}")
                } else {
                    at.to_string()
                })
            }
            None => previous.map(str::to_string),
        }
    }
}

/// The answer of a connector that does not poll: nothing, the cursor kept,
/// asked again in an hour.
pub(crate) fn idle(cursor: Option<&str>) -> OrderPoll {
    OrderPoll {
        changes: Vec::new(),
        cursor: cursor.map(str::to_string),
        next_poll_after: Duration::from_secs(3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_poll_goes_on_a_second_before_its_newest_order() {
        let at = parse_utc("2026-12-06T04:00:10Z").expect("date");
        let capped = PollWindow::next(Some(at), true, None).expect("cursor");
        assert_eq!(capped, "2026-12-06T04:00:10Z more");
        let window = PollWindow::parse(Some(&capped));
        assert_eq!(
            window.since(at, Duration::ZERO),
            parse_utc("2026-12-06T04:00:09Z").expect("date")
        );
        let done = PollWindow::next(Some(at), false, None).expect("cursor");
        let window = PollWindow::parse(Some(&done));
        assert_eq!(
            window.since(at, Duration::ZERO),
            parse_utc("2026-12-06T03:59:10Z").expect("date")
        );
        // Nothing seen: the look-back, and the previous cursor is kept.
        let first = PollWindow::parse(None);
        assert_eq!(
            first.since(at, Duration::from_secs(3600)),
            parse_utc("2026-12-06T03:00:10Z").expect("date")
        );
        assert_eq!(
            PollWindow::next(None, false, Some("x")).as_deref(),
            Some("x")
        );
        // WooCommerce's zone-less GMT dates read as UTC.
        assert_eq!(parse_utc("2026-12-06T04:00:10"), Some(at));
    }
}
