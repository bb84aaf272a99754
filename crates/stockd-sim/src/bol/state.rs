//! The bol simulator's state: offers with their EAN and corrected stock, orders, pending
//! process statuses, and the rules that settle them in time order.

use super::*;

pub(super) struct Offer {
    pub(super) offer_id: String,
    pub(super) ean: String,
    pub(super) reference: String,
    pub(super) amount: i64,
    pub(super) managed_by_retailer: bool,
    /// `seq` of the last applied stock update (orders after it count when managed).
    pub(super) updated_seq: u64,
    pub(super) on_hold: bool,
    pub(super) modified: DateTime<Utc>,
    pub(super) unit_price: f64,
}

pub(super) struct Item {
    pub(super) id: String,
    pub(super) offer_id: String,
    pub(super) quantity: i64,
    pub(super) shipped: i64,
    pub(super) cancelled: i64,
    pub(super) cancellation_request: bool,
    pub(super) changed: DateTime<Utc>,
    pub(super) unit_price: f64,
}

impl Item {
    pub(super) fn open(&self) -> i64 {
        (self.quantity - self.shipped - self.cancelled).max(0)
    }

    /// What the item takes off the offer's corrected stock: "amount minus
    /// handled order items and minus open order items" — shipped or open,
    /// not cancelled.
    pub(super) fn taken(&self) -> i64 {
        (self.quantity - self.cancelled).max(0)
    }
}

pub(super) struct Order {
    pub(super) id: String,
    pub(super) placed: DateTime<Utc>,
    pub(super) seq: u64,
    pub(super) items: Vec<Item>,
}

pub(super) enum Action {
    Stock {
        offer_id: String,
        amount: i64,
        managed: bool,
    },
    Cancel {
        item_id: String,
    },
    /// Write the offers export file under this report id.
    Export {
        report_id: String,
    },
    /// Nothing to apply (unknown entity); the process fails.
    None,
}

pub(super) struct NewProcess {
    pub(super) entity_id: String,
    pub(super) event_type: &'static str,
    pub(super) description: String,
    pub(super) outcome: ProcessOutcome,
    pub(super) failure: String,
    pub(super) action: Action,
}

pub(super) struct Process {
    pub(super) id: u64,
    pub(super) entity_id: String,
    pub(super) event_type: &'static str,
    pub(super) description: String,
    pub(super) created: DateTime<Utc>,
    pub(super) created_at: Instant,
    pub(super) due: Instant,
    pub(super) status: ProcessOutcomeOrPending,
    pub(super) outcome: ProcessOutcome,
    pub(super) failure: String,
    pub(super) error: Option<String>,
    pub(super) action: Action,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ProcessOutcomeOrPending {
    Pending,
    Done(ProcessOutcome),
}

/// The event type of an offers export (`ProcessStatus.eventType` in
/// `specs/bol/shared-v10.json`).
pub(super) const EXPORT_EVENT: &str = "CREATE_OFFER_EXPORT";

pub(super) struct Bucket {
    pub(super) level: f64,
    pub(super) at: Instant,
}

#[derive(Default)]
pub(super) struct BolState {
    pub(super) offers: Vec<Offer>,
    /// offer id → position in `offers` (offers are never removed).
    pub(super) offer_index: HashMap<String, usize>,
    /// report id → (written at, CSV file) of finished offer exports.
    pub(super) exports: HashMap<String, (Instant, String)>,
    pub(super) orders: Vec<Order>,
    pub(super) processes: BTreeMap<u64, Process>,
    pub(super) process_next: u64,
    pub(super) item_next: u64,
    pub(super) ean_next: u64,
    pub(super) seq: u64,
    /// token → expiry
    pub(super) tokens: HashMap<String, Instant>,
    /// client id → expiry of its newest token
    pub(super) client_token: HashMap<String, Instant>,
    pub(super) buckets: HashMap<usize, Bucket>,
    pub(super) outcomes: HashMap<String, ProcessOutcome>,
    pub(super) stats: BolStats,
    pub(super) returns: Vec<super::returns::Return>,
    pub(super) return_next: u64,
}

impl BolState {
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn offer(&self, id: &str) -> Option<&Offer> {
        self.offer_index.get(id).and_then(|&i| self.offers.get(i))
    }

    pub(super) fn offer_mut(&mut self, id: &str) -> Option<&mut Offer> {
        let i = *self.offer_index.get(id)?;
        self.offers.get_mut(i)
    }

    pub(super) fn add_offer(&mut self, offer: Offer) {
        self.offer_index
            .insert(offer.offer_id.clone(), self.offers.len());
        self.offers.push(offer);
    }

    pub(super) fn offer_by_sku(&self, sku: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.reference == sku)
    }

    /// `correctedStock`: amount minus open order items; with `managedByRetailer`
    /// only items of orders placed after the last stock update count.
    pub(super) fn corrected(&self, o: &Offer) -> i64 {
        // Managed by the retailer: the orders since the last update, open
        // or handled; else every open order.
        let open: i64 = self
            .orders
            .iter()
            .filter(|ord| !o.managed_by_retailer || ord.seq > o.updated_seq)
            .flat_map(|ord| ord.items.iter())
            .filter(|i| i.offer_id == o.offer_id)
            .map(|i| {
                if o.managed_by_retailer {
                    i.taken()
                } else {
                    i.open()
                }
            })
            .sum();
        (o.amount - open).max(0)
    }

    pub(super) fn listing(&self, o: &Offer) -> SimListing {
        let q = self.corrected(o);
        let mut external = Map::new();
        external.insert("offer_id".into(), Value::String(o.offer_id.clone()));
        external.insert("ean".into(), Value::String(o.ean.clone()));
        SimListing {
            sku: o.reference.clone(),
            external,
            quantity: if o.on_hold { 0 } else { q },
            // The offer is not for sale at 0; bol has no backorders.
            availability: if q > 0 && !o.on_hold {
                "in_stock"
            } else {
                "out_of_stock"
            }
            .into(),
        }
    }

    pub(super) fn new_ean(&mut self) -> String {
        self.ean_next += 1;
        ean13(&format!("87{:010}", self.ean_next % 10_000_000_000))
    }
}

/// Append the GS1 check digit to 12 digits.
pub(super) fn ean13(body12: &str) -> String {
    let sum: u32 = body12
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body12}{}", (10 - sum % 10) % 10)
}

pub(super) struct Bol {
    pub(super) config: Config,
    pub(super) core: Arc<SimCore>,
    pub(super) state: Mutex<BolState>,
    pub(super) base: String,
    pub(super) jwt_key: Vec<u8>,
}

pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Bol {
    /// The shop's wall clock: the configured simulated one, or the system's.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.config
            .clock
            .as_ref()
            .map_or_else(Utc::now, crate::SimClock::now)
    }

    pub(super) fn bol_stats(&self) -> BolStats {
        lock(&self.state).stats.clone()
    }

    /// Resolve every process whose delay has passed, oldest first, so stock updates and orders
    /// interleave in time order.
    pub(super) fn settle(&self, st: &mut BolState) {
        let now = Instant::now();
        let due: Vec<u64> = st
            .processes
            .values()
            .filter(|p| p.status == ProcessOutcomeOrPending::Pending && p.due <= now)
            .map(|p| p.id)
            .collect();
        for id in due {
            let Some(p) = st.processes.get_mut(&id) else {
                continue;
            };
            let outcome = p.outcome;
            let failure = p.failure.clone();
            let action = std::mem::replace(&mut p.action, Action::None);
            let result = match outcome {
                ProcessOutcome::Success => self.apply(st, action),
                ProcessOutcome::Failure => Err(failure),
                ProcessOutcome::Timeout => Ok(()),
            };
            if let Some(p) = st.processes.get_mut(&id) {
                match result {
                    Ok(()) => p.status = ProcessOutcomeOrPending::Done(outcome),
                    Err(msg) => {
                        p.status = ProcessOutcomeOrPending::Done(ProcessOutcome::Failure);
                        p.error = Some(msg);
                    }
                }
            }
        }
        let expiry = self.config.process_expiry;
        st.processes
            .retain(|_, p| now.duration_since(p.created_at) < expiry);
        let retention = self.config.export_retention;
        st.exports
            .retain(|_, (at, _)| now.duration_since(*at) < retention);
    }

    pub(super) fn apply(&self, st: &mut BolState, action: Action) -> Result<(), String> {
        match action {
            Action::Stock {
                offer_id,
                amount,
                managed,
            } => {
                let seq = st.next_seq();
                let Some(o) = st.offer_mut(&offer_id) else {
                    return Err(format!("Offer with id '{offer_id}' does not exist."));
                };
                o.amount = amount;
                o.managed_by_retailer = managed;
                o.updated_seq = seq;
                o.modified = self.now();
                Counters::add(&self.core.counters.updates_applied, 1);
                Ok(())
            }
            Action::Cancel { item_id } => {
                for ord in st.orders.iter_mut() {
                    if let Some(i) = ord.items.iter_mut().find(|i| i.id == item_id) {
                        let open = i.open();
                        if open == 0 {
                            return Err(format!(
                                "Order item '{item_id}' has already been handled."
                            ));
                        }
                        i.cancelled += open;
                        i.changed = self.now();
                        return Ok(());
                    }
                }
                Err(format!("Order item '{item_id}' does not exist."))
            }
            Action::Export { report_id } => {
                let file = super::export::offers_csv(st);
                st.exports.insert(report_id, (Instant::now(), file));
                Ok(())
            }
            Action::None => Err("Unknown entity.".into()),
        }
    }

    pub(super) fn create_process(&self, st: &mut BolState, np: NewProcess) -> Value {
        self.create_process_after(st, np, self.config.process_delay)
    }

    /// A process that stays PENDING for `delay`.
    pub(super) fn create_process_after(
        &self,
        st: &mut BolState,
        np: NewProcess,
        delay: Duration,
    ) -> Value {
        let NewProcess {
            entity_id,
            event_type,
            description,
            outcome,
            failure,
            action,
        } = np;
        st.process_next += 1;
        let id = st.process_next;
        let now = Instant::now();
        let p = Process {
            id,
            entity_id,
            event_type,
            description,
            created: self.now(),
            created_at: now,
            due: now + delay,
            status: ProcessOutcomeOrPending::Pending,
            outcome,
            failure,
            error: None,
            action,
        };
        let v = self.process_json(&p);
        st.processes.insert(id, p);
        v
    }

    pub(super) fn process_json(&self, p: &Process) -> Value {
        let status = match p.status {
            ProcessOutcomeOrPending::Pending => "PENDING",
            ProcessOutcomeOrPending::Done(ProcessOutcome::Success) => "SUCCESS",
            ProcessOutcomeOrPending::Done(ProcessOutcome::Failure) => "FAILURE",
            ProcessOutcomeOrPending::Done(ProcessOutcome::Timeout) => "TIMEOUT",
        };
        // The export's report id is known only once it is written (bol
        // returns `entityId` on SUCCESS for reports, UNCONFIRMED for the
        // export).
        let entity_id =
            (p.event_type != EXPORT_EVENT || status == "SUCCESS").then_some(p.entity_id.as_str());
        json!({
            "processStatusId": p.id.to_string(),
            "entityId": entity_id,
            "eventType": p.event_type,
            "description": p.description,
            "status": status,
            "errorMessage": p.error,
            "createTimestamp": ts(p.created),
            // `rel` values are UNCONFIRMED; "self" points at the single-status URL.
            "links": [{"rel": "self", "href": format!("{}/shared/process-status/{}", self.base, p.id)}],
        })
    }

    /// The outcome of a new process for the offer with this reference.
    pub(super) fn outcome_for(&self, st: &BolState, sku: Option<&str>) -> (ProcessOutcome, String) {
        let Some(sku) = sku else {
            return (ProcessOutcome::Success, String::new());
        };
        if self.core.rejects_sku(sku) {
            return (
                ProcessOutcome::Failure,
                // Wording UNCONFIRMED: bol's process failure messages are not in the note.
                format!("The stock of the offer with reference '{sku}' could not be updated because the offer is blocked."),
            );
        }
        match st.outcomes.get(sku) {
            Some(ProcessOutcome::Failure) => (
                ProcessOutcome::Failure,
                format!("The stock of the offer with reference '{sku}' could not be updated."),
            ),
            Some(o) => (*o, String::new()),
            None => (ProcessOutcome::Success, String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ean_check_digit() {
        // Known EANs.
        assert_eq!(ean13("400638133393"), "4006381333931");
        assert_eq!(ean13("871234567890"), "8712345678906");
    }
}
