//! The simulated warehouse's side of the day: the messages it sends
//! (deliveries, cycle counts, returns and their inspection, shipments), its
//! client of stockd's event API (in order, as on an ordered bus), and the
//! pick of an order from stockd's pick list against its own shelves.

use super::truth::Truth;
use super::{process, scenario, setup, Api, Happening, SimulateError, RECEIPT_RETRY_MS};
use crate::outbound::stats::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};

/// How many warehouse messages of each kind were sent (their keys count
/// them).
#[derive(Default)]
pub(super) struct WarehouseSent {
    pub(super) receipts: u64,
    pub(super) counts: u64,
    pub(super) returns: u64,
}

/// The event the warehouse sends for a delivery, a cycle count, a return
/// or its inspection (recorded in the truth as it is sent), and what
/// follows it and when (a return's inspection); `None` for other
/// happenings.
pub(super) fn warehouse_event(
    happening: Happening,
    warehouse: &scenario::Warehouse,
    skus: &[String],
    locations: &[String],
    truth: &mut Truth,
    sent: &mut WarehouseSent,
    rng: &mut Rng,
) -> Option<(Value, Option<(u64, Happening)>)> {
    match happening {
        Happening::Receipt { sku, location, qty } => {
            sent.receipts += 1;
            let (sku, location) = (&skus[sku], &locations[location]);
            truth.receive(sku, location, qty);
            Some((
                json!({"key": format!("delivery-{}", sent.receipts), "type": "receipt",
                "sku": sku, "location": location, "qty": qty}),
                None,
            ))
        }
        Happening::Count {
            sku,
            location,
            shrink,
        } => {
            sent.counts += 1;
            let (sku, location) = (&skus[sku], &locations[location]);
            // What is really there when the count is taken.
            let on_hand = truth.count(sku, location, shrink);
            Some((
                json!({"key": format!("count-{}", sent.counts), "type": "count",
                "sku": sku, "location": location, "on_hand": on_hand,
                "reason": "cycle count"}),
                None,
            ))
        }
        Happening::Return {
            sku: n,
            location: at,
            qty,
        } => {
            sent.returns += 1;
            let rma = sent.returns;
            let (sku, location) = (&skus[n], &locations[at]);
            truth.return_arrived(sku, location, qty);
            // What the inspection will find, and when it is done.
            let sellable = (0..qty)
                .filter(|_| rng.next_unit() < warehouse.return_sellable)
                .count() as i64;
            let [lo, hi] = warehouse.inspect_after_secs;
            let after_ms = (lo + rng.below(hi - lo + 1)) * 1_000;
            let inspect = Happening::Inspect {
                rma,
                sku: n,
                location: at,
                qty,
                sellable,
            };
            Some((
                json!({"key": format!("return-{rma}"), "type": "return_received",
                "rma_id": format!("RMA-{rma}"), "sku": sku, "location": location,
                "qty": qty}),
                Some((after_ms, inspect)),
            ))
        }
        Happening::Inspect {
            rma,
            sku,
            location,
            qty,
            sellable,
        } => {
            let (sku, location) = (&skus[sku], &locations[location]);
            truth.inspected(sku, location, qty, sellable);
            Some((
                json!({"key": format!("inspection-{rma}"), "type": "return_verified",
                "rma_id": format!("RMA-{rma}"), "sku": sku, "location": location,
                "sellable_qty": sellable, "unsellable_qty": qty - sellable}),
                None,
            ))
        }
        _ => None,
    }
}

/// The warehouse's client of stockd's event API. Messages go in the order
/// they happened, as on an ordered bus: one stockd refuses (503, its
/// database taking no writes) holds those after it until it is taken, so a
/// cycle count never overtakes the delivery or shipment it counted. While
/// stockd is down they wait for its restart.
pub(super) struct WarehouseClient {
    /// Messages not yet taken, oldest first.
    pub(super) waiting: VecDeque<Value>,
    /// Whether a `Flush` is scheduled.
    pub(super) retry_due: bool,
    /// Messages taken and drawn for a second delivery (`Redeliver { n }`).
    pub(super) sent: Vec<Value>,
    /// Sends stockd refused.
    pub(super) refused: u64,
    redelivery_rate: f64,
}

impl WarehouseClient {
    pub(super) fn new(redelivery_rate: f64) -> WarehouseClient {
        WarehouseClient {
            waiting: VecDeque::new(),
            retry_due: false,
            sent: Vec::new(),
            refused: 0,
            redelivery_rate,
        }
    }

    /// Sends what waits, in order, until stockd refuses one. Returns what
    /// to schedule (after how many ms): a retry, second deliveries.
    pub(super) async fn flush(
        &mut self,
        up: Option<&process::Process>,
        rng: &mut Rng,
    ) -> Result<Vec<(u64, Happening)>, SimulateError> {
        let mut later = Vec::new();
        let Some(process) = up else {
            return Ok(later);
        };
        while let Some(event) = self.waiting.front() {
            if process.api.post_event(event).await?.is_none() {
                self.refused += 1;
                if !self.retry_due {
                    self.retry_due = true;
                    later.push((RECEIPT_RETRY_MS, Happening::Flush));
                }
                break;
            }
            let taken = self.waiting.pop_front().expect("the front was there");
            // Drawn only when asked for: days without it keep their draws.
            if self.redelivery_rate > 0.0 && rng.next_unit() < self.redelivery_rate {
                let after = 1_000 + rng.below(59_000);
                self.sent.push(taken);
                later.push((
                    after,
                    Happening::Redeliver {
                        n: self.sent.len() - 1,
                    },
                ));
            }
        }
        Ok(later)
    }
}

/// What the warehouse finds when it comes to pick an order.
pub(super) enum Pick {
    /// Every unit is on the shelf stockd reserved it at: (SKU, warehouse,
    /// units) to ship.
    Ship(Vec<(String, String, i64)>),
    /// stockd has not heard of the order yet.
    Unknown,
    /// Nothing of it is reserved any more.
    Settled,
    /// Some reserved units are not on their shelf (the order was oversold,
    /// or stockd reserved where the units are not).
    Short,
    /// stockd's pick list is not what the channel sold (units per SKU).
    NotTheOrder(BTreeMap<String, i64>),
}

/// Reads where stockd reserved order `index` (its pick list) and checks
/// it against the books and the shelves.
pub(super) async fn pick(api: &Api, truth: &Truth, index: usize) -> Result<Pick, SimulateError> {
    let o = &truth.orders[index];
    if o.cancelled || o.shipped {
        return Ok(Pick::Settled);
    }
    let path = format!(
        "/v1/orders/{}?channel={}",
        url_segment(&o.order_id),
        url_segment(&o.channel)
    );
    let view = match api.call("GET", &path, None).await? {
        (status, view) if status.is_success() => view,
        (axum::http::StatusCode::NOT_FOUND, _) => return Ok(Pick::Unknown),
        (status, answer) => return Err(setup(format!("GET {path}: {status}: {answer}"))),
    };
    let mut picks = Vec::new();
    let mut listed: BTreeMap<String, i64> = BTreeMap::new();
    for row in view["reservations"].as_array().into_iter().flatten() {
        let open = row["open_qty"].as_i64().unwrap_or(0);
        if open > 0 {
            let sku = row["sku"].as_str().unwrap_or_default().to_string();
            *listed.entry(sku.clone()).or_default() += open;
            let location = row["location"].as_str().unwrap_or_default().to_string();
            picks.push((sku, location, open));
        }
    }
    if picks.is_empty() {
        return Ok(Pick::Settled);
    }
    if listed != truth.units_of(index) {
        return Ok(Pick::NotTheOrder(listed));
    }
    Ok(if truth.can_pick(&picks) {
        Pick::Ship(picks)
    } else {
        Pick::Short
    })
}

/// `text` as one URL path segment or query value (percent-encoded).
fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
