//! What really happened in a simulated day, kept by the simulation itself —
//! the channels' order books (what each simulator sold, as it answered the
//! customers) and the warehouse's units — and the checkers that hold stockd
//! to it: every order reaches the ledger exactly once, units are conserved,
//! no drift after quiescence; and the figures of the report.

use serde::Serialize;
use std::collections::BTreeMap;

/// One order a channel took.
#[derive(Debug, Clone, PartialEq)]
pub struct BookOrder {
    pub channel: String,
    pub order_id: String,
    pub sku: String,
    pub qty: i64,
    /// Simulated milliseconds from the start.
    pub at_ms: u64,
    /// The units the merchant did not have when the channel sold them.
    pub oversold_units: i64,
    pub cancelled: bool,
    pub shipped: bool,
}

/// The simulation's own account: channel books and physical units.
#[derive(Debug, Default)]
pub struct Truth {
    pub orders: Vec<BookOrder>,
    /// Per SKU: units received (opening stock, deliveries and returned
    /// units found sellable).
    pub received: BTreeMap<String, i64>,
    /// Per (SKU, warehouse): units physically there (received, less written
    /// off, less shipped).
    pub on_hand_at: BTreeMap<(String, String), i64>,
    /// Per SKU: units shipped (a kit's as its components').
    pub shipped: BTreeMap<String, i64>,
    /// Per SKU: units a cycle count found missing.
    pub written_off: BTreeMap<String, i64>,
    /// Per (SKU, warehouse): returned units waiting for their inspection.
    pub pending_return_at: BTreeMap<(String, String), i64>,
    /// Per SKU: returned units the inspection found unsellable.
    pub returned_unsellable: BTreeMap<String, i64>,
    /// Per kit SKU: its components (SKU, units in one kit). A kit has no
    /// units of its own: selling one commits its components'.
    pub kits: BTreeMap<String, Vec<(String, i64)>>,
    /// Per SKU: units sold and not cancelled.
    pub committed: BTreeMap<String, i64>,
    /// Per channel: order attempts a channel refused (it showed too little).
    pub refused: BTreeMap<String, u64>,
    /// Per channel: refused attempts while the merchant had the units.
    pub lost_sales: BTreeMap<String, u64>,
}

impl Truth {
    pub fn receive(&mut self, sku: &str, location: &str, qty: i64) {
        *self.received.entry(sku.to_string()).or_default() += qty;
        *self
            .on_hand_at
            .entry((sku.to_string(), location.to_string()))
            .or_default() += qty;
    }

    /// A customer's return of `qty` units arrived at `location`: not
    /// sellable until inspected.
    pub fn return_arrived(&mut self, sku: &str, location: &str, qty: i64) {
        *self
            .pending_return_at
            .entry((sku.to_string(), location.to_string()))
            .or_default() += qty;
    }

    /// The inspection of a return of `qty` units: `sellable` of them go on
    /// the shelf, the rest is written off.
    pub fn inspected(&mut self, sku: &str, location: &str, qty: i64, sellable: i64) {
        *self
            .pending_return_at
            .entry((sku.to_string(), location.to_string()))
            .or_default() -= qty;
        self.receive(sku, location, sellable);
        *self.returned_unsellable.entry(sku.to_string()).or_default() += qty - sellable;
    }

    /// A cycle count of `sku` at `location` that finds up to `shrink` units
    /// missing: returns what the count reports (the units really there).
    pub fn count(&mut self, sku: &str, location: &str, shrink: i64) -> i64 {
        let there = self
            .on_hand_at
            .entry((sku.to_string(), location.to_string()))
            .or_default();
        let missing = shrink.clamp(0, (*there).max(0));
        *there -= missing;
        *self.written_off.entry(sku.to_string()).or_default() += missing;
        *there
    }

    /// Units the merchant has (received, less written off) and has not
    /// sold; for a kit, the whole kits its components make.
    pub fn free(&self, sku: &str) -> i64 {
        match self.kits.get(sku) {
            Some(components) => components
                .iter()
                .map(|(c, per_kit)| self.free(c).max(0) / per_kit)
                .min()
                .unwrap_or(0),
            None => {
                self.received.get(sku).copied().unwrap_or(0)
                    - self.written_off.get(sku).copied().unwrap_or(0)
                    - self.committed.get(sku).copied().unwrap_or(0)
            }
        }
    }

    /// Commits (or with `sign` -1 releases) `qty` of `sku`: a kit's
    /// components, a variant's own units.
    fn commit(&mut self, sku: &str, qty: i64, sign: i64) {
        let parts = match self.kits.get(sku) {
            Some(components) => components
                .iter()
                .map(|(c, per_kit)| (c.clone(), per_kit * qty))
                .collect(),
            None => vec![(sku.to_string(), qty)],
        };
        for (part, units) in parts {
            *self.committed.entry(part).or_default() += sign * units;
        }
    }

    /// A channel sold `qty` of `sku`: returns the order's index in the book.
    pub fn sold(
        &mut self,
        channel: &str,
        order_id: String,
        sku: &str,
        qty: i64,
        at_ms: u64,
    ) -> usize {
        let oversold_units = (qty - self.free(sku).max(0)).max(0);
        self.commit(sku, qty, 1);
        self.orders.push(BookOrder {
            channel: channel.to_string(),
            order_id,
            sku: sku.to_string(),
            qty,
            at_ms,
            oversold_units,
            cancelled: false,
            shipped: false,
        });
        self.orders.len() - 1
    }

    pub fn cancelled(&mut self, index: usize) {
        let order = &mut self.orders[index];
        if !order.cancelled {
            order.cancelled = true;
            let (sku, qty) = (order.sku.clone(), order.qty);
            self.commit(&sku, qty, -1);
        }
    }

    /// The units order `index` takes, per variant (a kit's components).
    pub fn units_of(&self, index: usize) -> BTreeMap<String, i64> {
        let order = &self.orders[index];
        match self.kits.get(&order.sku) {
            Some(components) => components
                .iter()
                .map(|(c, per_kit)| (c.clone(), per_kit * order.qty))
                .collect(),
            None => BTreeMap::from([(order.sku.clone(), order.qty)]),
        }
    }

    /// Whether the warehouse can pick `picks` (SKU, warehouse, units): every
    /// unit is on its shelf.
    pub fn can_pick(&self, picks: &[(String, String, i64)]) -> bool {
        let mut wanted: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for (sku, location, qty) in picks {
            *wanted.entry((sku, location)).or_default() += qty;
        }
        wanted.iter().all(|((sku, location), qty)| {
            self.on_hand_at
                .get(&(sku.to_string(), location.to_string()))
                .copied()
                .unwrap_or(0)
                >= *qty
        })
    }

    /// Order `index` leaves the warehouse: `picks` (SKU, warehouse, units)
    /// go off the shelves.
    pub fn ship(&mut self, index: usize, picks: &[(String, String, i64)]) {
        self.orders[index].shipped = true;
        for (sku, location, qty) in picks {
            *self
                .on_hand_at
                .entry((sku.clone(), location.clone()))
                .or_default() -= qty;
            *self.shipped.entry(sku.clone()).or_default() += qty;
        }
    }

    pub fn refused(&mut self, channel: &str, sku: &str, qty: i64) {
        *self.refused.entry(channel.to_string()).or_default() += 1;
        if self.free(sku) >= qty {
            *self.lost_sales.entry(channel.to_string()).or_default() += 1;
        }
    }
}

/// An order event as stockd's ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LedgerOrder {
    pub channel: String,
    pub order_id: String,
    /// `order` or `cancel`.
    pub kind: String,
}

/// What stockd shows after quiescence, per SKU and per listing.
#[derive(Debug, Default)]
pub struct StockdState {
    /// Per SKU: (on hand, reserved).
    pub stock: BTreeMap<String, (i64, i64)>,
    /// Per (SKU, warehouse): on hand.
    pub on_hand_at: BTreeMap<(String, String), i64>,
    /// Per (SKU, warehouse): returned units not yet inspected.
    pub pending_return_at: BTreeMap<(String, String), i64>,
    /// Per (channel, SKU): the quantity stockd wants the channel to show.
    pub desired: BTreeMap<(String, String), i64>,
    /// Per (channel, SKU): what the channel shows (read back from it).
    pub shown: BTreeMap<(String, String), i64>,
    /// (channel, SKU) whose raise the channel's change budget holds back
    /// (Google asks for updates "up to twice per day"): showing less than
    /// stockd wants there is the rules' choice, not drift.
    pub held_by_budget: std::collections::BTreeSet<(String, String)>,
}

/// A broken invariant: what broke and the first simulated moment it shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub seed: u64,
    /// `order_not_exactly_once`, `cancel_not_exactly_once`, `units_not_conserved`,
    /// `drift_after_quiescence`, `inbound_not_exactly_once` or
    /// `pick_list_not_the_order`.
    pub invariant: &'static str,
    /// The first event where it broke.
    pub event: String,
    pub at_ms: u64,
}

/// Every order of the books reaches the ledger exactly once, and so does
/// every cancellation.
pub fn check_exactly_once(seed: u64, truth: &Truth, ledger: &[LedgerOrder]) -> Vec<Violation> {
    let mut seen: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for l in ledger {
        *seen
            .entry((l.channel.as_str(), l.order_id.as_str(), l.kind.as_str()))
            .or_default() += 1;
    }
    let mut out = Vec::new();
    for o in &truth.orders {
        let placed = seen
            .get(&(o.channel.as_str(), o.order_id.as_str(), "order"))
            .copied()
            .unwrap_or(0);
        if placed != 1 {
            out.push(Violation {
                seed,
                invariant: "order_not_exactly_once",
                event: format!(
                    "order {} on {} reached the ledger {placed} times",
                    o.order_id, o.channel
                ),
                at_ms: o.at_ms,
            });
        }
        let cancels = seen
            .get(&(o.channel.as_str(), o.order_id.as_str(), "cancel"))
            .copied()
            .unwrap_or(0);
        let expected = usize::from(o.cancelled);
        if cancels != expected {
            out.push(Violation {
                seed,
                invariant: "cancel_not_exactly_once",
                event: format!(
                    "cancellation of order {} on {} reached the ledger {cancels} times, expected {expected}",
                    o.order_id, o.channel
                ),
                at_ms: o.at_ms,
            });
        }
    }
    out
}

/// Every unit received is on hand (in the warehouse it is in), shipped or
/// written off by a count, every returned unit is pending its inspection
/// until it is found sellable (received) or not, and every unit sold and
/// neither cancelled nor shipped is reserved.
pub fn check_units(seed: u64, truth: &Truth, stockd: &StockdState) -> Vec<Violation> {
    let mut out = Vec::new();
    let first_order = |sku: &str| {
        truth
            .orders
            .iter()
            .find(|o| o.sku == sku)
            .map_or(0, |o| o.at_ms)
    };
    // Every variant that received or sold a unit (kits commit their
    // components', so a component sold only in kits is checked too).
    let skus: std::collections::BTreeSet<&String> = truth
        .received
        .keys()
        .chain(truth.committed.keys())
        .collect();
    for sku in skus {
        let received = &truth.received.get(sku).copied().unwrap_or(0);
        let committed = truth.committed.get(sku).copied().unwrap_or(0);
        let written_off = truth.written_off.get(sku).copied().unwrap_or(0);
        let shipped = truth.shipped.get(sku).copied().unwrap_or(0);
        let (on_hand, reserved) = stockd.stock.get(sku).copied().unwrap_or((0, 0));
        if on_hand != received - written_off - shipped || reserved != committed - shipped {
            out.push(Violation {
                seed,
                invariant: "units_not_conserved",
                event: format!(
                    "{sku}: received {received}, written off {written_off}, sold {committed}, \
                     shipped {shipped}; stockd has {on_hand} on hand, {reserved} reserved"
                ),
                at_ms: first_order(sku),
            });
        }
    }
    for ((sku, location), there) in &truth.on_hand_at {
        let held = stockd
            .on_hand_at
            .get(&(sku.clone(), location.clone()))
            .copied()
            .unwrap_or(0);
        if held != *there {
            out.push(Violation {
                seed,
                invariant: "units_not_conserved",
                event: format!("{sku} at {location}: {there} there; stockd has {held} on hand"),
                at_ms: first_order(sku),
            });
        }
    }
    let returned: std::collections::BTreeSet<&(String, String)> = truth
        .pending_return_at
        .keys()
        .chain(stockd.pending_return_at.keys())
        .collect();
    for key in returned {
        let pending = truth.pending_return_at.get(key).copied().unwrap_or(0);
        let held = stockd.pending_return_at.get(key).copied().unwrap_or(0);
        if held != pending {
            out.push(Violation {
                seed,
                invariant: "units_not_conserved",
                event: format!(
                    "{} at {}: {pending} returned units await inspection; stockd has {held} pending return",
                    key.0, key.1
                ),
                at_ms: first_order(&key.0),
            });
        }
    }
    out
}

/// After quiescence every channel shows what stockd wants it to show.
/// Whether the channel shows other than stockd wants for a listing — less a
/// raise its change budget holds back.
fn drifted(stockd: &StockdState, key: &(String, String)) -> bool {
    let shown = stockd.shown.get(key);
    let desired = stockd.desired.get(key);
    let held = stockd.held_by_budget.contains(key)
        && matches!((shown, desired), (Some(s), Some(d)) if s < d);
    shown != desired && !held
}

pub fn check_drift(seed: u64, end_ms: u64, stockd: &StockdState) -> Vec<Violation> {
    stockd
        .desired
        .iter()
        .filter_map(|(key, desired)| {
            let shown = stockd.shown.get(key).copied();
            drifted(stockd, key).then(|| Violation {
                seed,
                invariant: "drift_after_quiescence",
                event: format!(
                    "{} on {} shows {} where stockd wants {desired}",
                    key.1,
                    key.0,
                    shown.map_or("nothing".to_string(), |q| q.to_string())
                ),
                at_ms: end_ms,
            })
        })
        .collect()
}

/// Latency percentiles in simulated milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<f64>) -> Latency {
        samples.sort_by(f64::total_cmp);
        let p = |q| crate::outbound::stats::percentile(&samples, q);
        Latency {
            p50: p(50.0),
            p95: p(95.0),
            p99: p(99.0),
        }
    }
}

/// One channel's figures (or the total's).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub orders: u64,
    pub order_lines: u64,
    pub oversold_lines: u64,
    /// Oversold lines per order line.
    pub oversell_rate: f64,
    /// Orders the merchant must cancel (an oversold line) per order.
    pub cancel_ratio: f64,
    /// Listings whose channel differs from stockd after quiescence.
    pub drift: u64,
    /// `drift` per listing.
    pub drift_rate: f64,
    pub latency_ms: Latency,
    /// The latency of protective updates alone (those that lower what a
    /// channel shows: the ones that prevent overselling, sent first and
    /// never held by a change budget).
    pub latency_ms_protective: Latency,
    /// Order attempts the channel refused (it showed too little).
    pub refused: u64,
    /// Refused while the merchant had the units (held back by the rules or
    /// not yet shown).
    pub lost_sales: u64,
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// The figures of `channel` (`None`: every channel).
pub fn figures(
    truth: &Truth,
    stockd: &StockdState,
    channel: Option<&str>,
    latency: Vec<f64>,
    protective_latency: Vec<f64>,
) -> Figures {
    let mine = |c: &str| channel.is_none_or(|x| x == c);
    let orders: Vec<&BookOrder> = truth.orders.iter().filter(|o| mine(&o.channel)).collect();
    // One line per order in a simulated day.
    let order_lines = orders.len() as u64;
    let oversold_lines = orders.iter().filter(|o| o.oversold_units > 0).count() as u64;
    let listings: Vec<_> = stockd.desired.keys().filter(|(c, _)| mine(c)).collect();
    let drift = listings.iter().filter(|key| drifted(stockd, key)).count() as u64;
    let sum = |m: &BTreeMap<String, u64>| m.iter().filter(|(c, _)| mine(c)).map(|(_, n)| n).sum();
    Figures {
        orders: order_lines,
        order_lines,
        oversold_lines,
        oversell_rate: ratio(oversold_lines, order_lines),
        cancel_ratio: ratio(oversold_lines, order_lines),
        drift,
        drift_rate: ratio(drift, listings.len() as u64),
        latency_ms: Latency::of(latency),
        latency_ms_protective: Latency::of(protective_latency),
        refused: sum(&truth.refused),
        lost_sales: sum(&truth.lost_sales),
    }
}

/// A figure against its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub value: f64,
    pub target: f64,
    pub pass: bool,
}

/// The per-seed targets of the field: oversell < 0.5 %, p95 < 5 s,
/// drift < 0.2 %, cancel < 1 %.
pub fn targets(total: &Figures) -> BTreeMap<&'static str, Target> {
    let below = |value: f64, target: f64| Target {
        value,
        target,
        pass: value < target,
    };
    BTreeMap::from([
        ("oversell_rate", below(total.oversell_rate, 0.005)),
        ("latency_p95_ms", below(total.latency_ms.p95, 5_000.0)),
        ("drift_rate", below(total.drift_rate, 0.002)),
        ("cancel_ratio", below(total.cancel_ratio, 0.01)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> Truth {
        let mut t = Truth::default();
        t.receive("A", "WH1", 2);
        t.sold("shop", "1".into(), "A", 1, 10);
        t.sold("shop", "2".into(), "A", 2, 20);
        let i = t.sold("woo", "3".into(), "A", 1, 30);
        t.cancelled(i);
        t
    }

    fn ledger_of(t: &Truth) -> Vec<LedgerOrder> {
        let mut l: Vec<LedgerOrder> = t
            .orders
            .iter()
            .map(|o| LedgerOrder {
                channel: o.channel.clone(),
                order_id: o.order_id.clone(),
                kind: "order".into(),
            })
            .collect();
        l.extend(
            t.orders
                .iter()
                .filter(|o| o.cancelled)
                .map(|o| LedgerOrder {
                    channel: o.channel.clone(),
                    order_id: o.order_id.clone(),
                    kind: "cancel".into(),
                }),
        );
        l
    }

    #[test]
    fn simulate_truth_counts_oversold_lines_from_the_books() {
        let t = book();
        // 2 received: order 1 takes 1, order 2 wants 2 with 1 left (oversold),
        // order 3 wants 1 with none left (oversold, then cancelled).
        let over: Vec<i64> = t.orders.iter().map(|o| o.oversold_units).collect();
        assert_eq!(over, vec![0, 1, 1]);
        assert_eq!(t.committed["A"], 3);
        let f = figures(&t, &StockdState::default(), None, vec![], vec![]);
        assert_eq!((f.order_lines, f.oversold_lines), (3, 2));
    }

    #[test]
    fn simulate_checker_catches_a_lost_and_a_doubled_order() {
        let t = book();
        let full = ledger_of(&t);
        assert!(check_exactly_once(7, &t, &full).is_empty());
        // Planted faults: order 1 never reached the ledger, order 2 twice.
        let mut planted: Vec<LedgerOrder> =
            full.iter().filter(|l| l.order_id != "1").cloned().collect();
        planted.push(full[1].clone());
        let v = check_exactly_once(7, &t, &planted);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].invariant, "order_not_exactly_once");
        assert_eq!(v[0].seed, 7);
        assert_eq!(v[0].at_ms, 10);
        assert!(v[1].event.contains("2 times"), "{}", v[1].event);
    }

    #[test]
    fn simulate_checker_catches_units_and_drift() {
        let t = book();
        let mut s = StockdState::default();
        s.stock.insert("A".into(), (2, 3));
        s.on_hand_at.insert(("A".into(), "WH1".into()), 2);
        s.desired.insert(("shop".into(), "A".into()), 0);
        s.shown.insert(("shop".into(), "A".into()), 0);
        assert!(check_units(1, &t, &s).is_empty());
        assert!(check_drift(1, 99, &s).is_empty());
        s.stock.insert("A".into(), (2, 2));
        s.shown.insert(("shop".into(), "A".into()), 1);
        assert_eq!(check_units(1, &t, &s)[0].invariant, "units_not_conserved");
        let d = check_drift(1, 99, &s);
        assert_eq!((d[0].invariant, d[0].at_ms), ("drift_after_quiescence", 99));
    }

    #[test]
    fn simulate_truth_counts_shrinkage_per_warehouse() {
        let mut t = Truth::default();
        t.receive("A", "WH1", 3);
        t.receive("A", "WH2", 1);
        // A count finds 2 missing at WH2, where only 1 is: 1 written off.
        assert_eq!(t.count("A", "WH2", 2), 0);
        assert_eq!(t.count("A", "WH1", 1), 2);
        assert_eq!((t.written_off["A"], t.free("A")), (2, 2));
        // Oversell is counted against what is really there.
        t.sold("shop", "1".into(), "A", 3, 10);
        assert_eq!(t.orders[0].oversold_units, 1);

        let mut s = StockdState::default();
        s.stock.insert("A".into(), (2, 3));
        s.on_hand_at.insert(("A".into(), "WH1".into()), 2);
        s.on_hand_at.insert(("A".into(), "WH2".into()), 0);
        assert!(check_units(1, &t, &s).is_empty());
        // stockd missed the WH2 count: both totals and the warehouse break.
        s.stock.insert("A".into(), (3, 3));
        s.on_hand_at.insert(("A".into(), "WH2".into()), 1);
        let v = check_units(1, &t, &s);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[1].event.contains("A at WH2"), "{}", v[1].event);
    }

    #[test]
    fn simulate_truth_keeps_returns_pending_until_inspected() {
        let mut t = Truth::default();
        t.receive("A", "WH1", 1);
        t.return_arrived("A", "WH2", 3);
        // Returned units are not sellable before the inspection.
        assert_eq!(t.free("A"), 1);
        let mut s = StockdState::default();
        s.stock.insert("A".into(), (1, 0));
        s.on_hand_at.insert(("A".into(), "WH1".into()), 1);
        s.pending_return_at.insert(("A".into(), "WH2".into()), 3);
        assert!(check_units(1, &t, &s).is_empty());
        // Two of the three are sellable: on the shelf at WH2.
        t.inspected("A", "WH2", 3, 2);
        assert_eq!((t.free("A"), t.returned_unsellable["A"]), (3, 1));
        s.stock.insert("A".into(), (3, 0));
        s.on_hand_at.insert(("A".into(), "WH2".into()), 2);
        // stockd still holds the return as pending: broken.
        let v = check_units(1, &t, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].event.contains("pending return"), "{}", v[0].event);
        s.pending_return_at.insert(("A".into(), "WH2".into()), 0);
        assert!(check_units(1, &t, &s).is_empty());
        // A unit found unsellable put on the shelf breaks the totals.
        s.stock.insert("A".into(), (4, 0));
        s.on_hand_at.insert(("A".into(), "WH2".into()), 3);
        assert_eq!(check_units(1, &t, &s).len(), 2);
    }

    #[test]
    fn simulate_truth_ships_what_is_on_the_shelves() {
        let mut t = Truth::default();
        t.kits.insert("KIT".into(), vec![("A".into(), 2)]);
        t.receive("A", "WH1", 3);
        t.receive("A", "WH2", 2);
        let kit = t.sold("shop", "1".into(), "KIT", 2, 10);
        assert_eq!(t.units_of(kit), BTreeMap::from([("A".to_string(), 4)]));
        let picks = |wh1: i64, wh2: i64| {
            vec![
                ("A".to_string(), "WH1".to_string(), wh1),
                ("A".to_string(), "WH2".to_string(), wh2),
            ]
        };
        // Four units are there, but not three at WH2.
        assert!(!t.can_pick(&picks(1, 3)));
        assert!(t.can_pick(&picks(3, 1)));
        t.ship(kit, &picks(3, 1));
        assert!(t.orders[kit].shipped);
        // One unit left, still free: shipping does not sell twice.
        assert_eq!((t.free("A"), t.shipped["A"]), (1, 4));
        let mut s = StockdState::default();
        s.stock.insert("A".into(), (1, 0));
        s.on_hand_at.insert(("A".into(), "WH1".into()), 0);
        s.on_hand_at.insert(("A".into(), "WH2".into()), 1);
        assert!(check_units(1, &t, &s).is_empty());
        // stockd still holding the units as reserved breaks the totals.
        s.stock.insert("A".into(), (5, 4));
        let v = check_units(1, &t, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].event.contains("shipped 4"), "{}", v[0].event);
    }

    #[test]
    fn simulate_truth_sells_kits_from_their_components() {
        let mut t = Truth::default();
        t.kits
            .insert("KIT".into(), vec![("A".into(), 2), ("B".into(), 1)]);
        t.receive("A", "WH1", 5);
        t.receive("B", "WH1", 1);
        // 5 A make 2 kits, 1 B makes 1: one kit is there.
        assert_eq!(t.free("KIT"), 1);
        t.refused("shop", "KIT", 1);
        assert_eq!(t.lost_sales["shop"], 1, "refused while a kit was there");
        let i = t.sold("shop", "1".into(), "KIT", 2, 10);
        assert_eq!(t.orders[i].oversold_units, 1);
        assert_eq!((t.committed["A"], t.committed["B"]), (4, 2));
        t.cancelled(i);
        assert_eq!((t.committed["A"], t.committed["B"]), (0, 0));
        t.sold("shop", "2".into(), "KIT", 1, 20);
        // A component sold only in kits is held to its reservations too.
        let mut s = StockdState::default();
        s.stock.insert("A".into(), (5, 2));
        s.stock.insert("B".into(), (1, 0));
        s.on_hand_at.insert(("A".into(), "WH1".into()), 5);
        s.on_hand_at.insert(("B".into(), "WH1".into()), 1);
        let v = check_units(1, &t, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].event.starts_with("B:"), "{}", v[0].event);
    }
}
