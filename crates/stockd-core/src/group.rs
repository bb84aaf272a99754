//! Idempotent application of requests. A store collects many requests into
//! one group (one transaction, one fsync); each request is a batch of events
//! that applies atomically or not at all, and every event key applies once.

use crate::event::Event;
use crate::ids::{IdempotencyKey, OrderRef, RmaId, Sku};
use crate::ledger::{apply, Applied, Awaiting, Book, EventError, Note, Refusal, StockDelta};
use crate::stock::InboundKey;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// SHA-256 of an event's canonical payload, computed by the adapter that knows the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PayloadHash(pub [u8; 32]);

/// An event with the hash of its canonical payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub event: Event,
    pub payload_hash: PayloadHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Applied,
    Duplicate,
    Quarantined,
}

/// What the client is told about one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    pub key: IdempotencyKey,
    pub status: EventStatus,
    /// Ledger sequence number of the applied event.
    pub seq: Option<u64>,
    /// Why an event is quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What is stored under an idempotency key: the payload hash and the first result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub payload_hash: PayloadHash,
    pub result: EventResult,
}

/// Why a whole request was refused; nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The key was used before for a different payload.
    KeyReused { index: usize, key: IdempotencyKey },
    /// The event contradicts the ledger.
    Rejected { index: usize, error: EventError },
}

/// One applied event, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub seq: u64,
    pub event: Event,
    pub received_at: DateTime<Utc>,
    pub changes: Vec<StockDelta>,
    pub notes: Vec<Note>,
}

/// An event kept until what it names exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    pub event: Event,
    pub payload_hash: PayloadHash,
    pub awaiting: Awaiting,
    pub received_at: DateTime<Utc>,
}

/// A quarantined event as stored, for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub id: i64,
    pub event: Event,
    pub payload_hash: PayloadHash,
}

/// What became of a replayed quarantined event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    Applied { id: i64, seq: u64 },
    StillWaiting { id: i64, awaiting: Awaiting },
    Rejected { id: i64, error: EventError },
}

/// Everything a group changes besides the book's rows, for the store to write.
#[derive(Debug, Default)]
pub struct GroupWrites {
    /// Records to insert or replace; `None` deletes the key.
    pub idempotency: Vec<(IdempotencyKey, Option<IdempotencyRecord>)>,
    pub ledger: Vec<LedgerEntry>,
    pub quarantined: Vec<QuarantineEntry>,
    pub replayed: Vec<ReplayOutcome>,
    /// Orders created in this group: quarantined events waiting for them can wake.
    pub orders_created: Vec<OrderRef>,
    /// RMAs that received units in this group: verifications waiting for them can wake.
    pub returns_received: Vec<RmaId>,
}

/// What a store must load before running a group of events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub keys: BTreeSet<IdempotencyKey>,
    /// Variants named by the events; their stock rows at every location are loaded.
    pub skus: BTreeSet<Sku>,
    /// Orders named; the SKUs of their lines are needed too.
    pub orders: BTreeSet<OrderRef>,
    pub inbound: BTreeSet<InboundKey>,
    /// RMAs named; the SKUs of their lines are needed too.
    pub rmas: BTreeSet<RmaId>,
}

impl Needs {
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Needs {
        let mut needs = Needs::default();
        for event in events {
            needs.keys.insert(event.key.clone());
            needs.skus.extend(event.kind.skus().into_iter().cloned());
            if let Some(order) = event.kind.order_ref() {
                needs.orders.insert(order.clone());
            }
            if let Some(rma_id) = event.kind.rma_id() {
                needs.rmas.insert(rma_id.clone());
            }
            if let crate::event::EventKind::Inbound {
                po_id,
                sku,
                location,
                ..
            }
            | crate::event::EventKind::InboundReceived {
                po_id,
                sku,
                location,
                ..
            } = &event.kind
            {
                needs.inbound.insert(InboundKey {
                    po_id: po_id.clone(),
                    sku: sku.clone(),
                    location: location.clone(),
                });
            }
        }
        needs
    }
}

/// One group of requests over a loaded book.
pub struct Group<'a> {
    book: &'a mut Book,
    keys: HashMap<IdempotencyKey, IdempotencyRecord>,
    next_seq: u64,
    received_at: DateTime<Utc>,
    writes: GroupWrites,
}

impl<'a> Group<'a> {
    /// `keys` holds the stored records for the keys in `Needs`; `next_seq` is
    /// the first free ledger sequence number.
    pub fn new(
        book: &'a mut Book,
        keys: HashMap<IdempotencyKey, IdempotencyRecord>,
        next_seq: u64,
        received_at: DateTime<Utc>,
    ) -> Group<'a> {
        Group {
            book,
            keys,
            next_seq,
            received_at,
            writes: GroupWrites::default(),
        }
    }

    /// Applies one request atomically.
    pub fn submit(&mut self, events: &[Submission]) -> Result<Vec<EventResult>, RequestError> {
        let book_checkpoint = self.book.checkpoint();
        let before = self.lengths();
        let mut keys_added = Vec::new();
        let mut results = Vec::with_capacity(events.len());
        let mut failure = None;
        for (index, submission) in events.iter().enumerate() {
            let key = &submission.event.key;
            if let Some(record) = self.keys.get(key) {
                if record.payload_hash != submission.payload_hash {
                    failure = Some(RequestError::KeyReused {
                        index,
                        key: key.clone(),
                    });
                    break;
                }
                results.push(EventResult {
                    status: EventStatus::Duplicate,
                    ..record.result.clone()
                });
                continue;
            }
            let result = match apply(self.book, &submission.event.kind) {
                Ok(applied) => self.record_applied(&submission.event, applied),
                Err(Refusal::Quarantine(awaiting)) => {
                    let reason = awaiting.reason();
                    self.writes.quarantined.push(QuarantineEntry {
                        event: submission.event.clone(),
                        payload_hash: submission.payload_hash,
                        awaiting,
                        received_at: self.received_at,
                    });
                    EventResult {
                        key: key.clone(),
                        status: EventStatus::Quarantined,
                        seq: None,
                        reason: Some(reason),
                    }
                }
                Err(Refusal::Reject(error)) => {
                    failure = Some(RequestError::Rejected { index, error });
                    break;
                }
            };
            let record = IdempotencyRecord {
                payload_hash: submission.payload_hash,
                result: result.clone(),
            };
            self.keys.insert(key.clone(), record.clone());
            self.writes.idempotency.push((key.clone(), Some(record)));
            keys_added.push(key.clone());
            results.push(result);
        }
        match failure {
            None => Ok(results),
            Some(error) => {
                self.book.rollback(book_checkpoint);
                self.truncate(before);
                for key in keys_added {
                    self.keys.remove(&key);
                }
                Err(error)
            }
        }
    }

    /// Replays a quarantined event whose key is already recorded as quarantined.
    pub fn replay(&mut self, entry: &Quarantined) -> ReplayOutcome {
        let key = &entry.event.key;
        // Another writer may have replayed it already: never apply it twice.
        if let Some(EventResult {
            status: EventStatus::Applied,
            seq: Some(seq),
            ..
        }) = self.keys.get(key).map(|r| &r.result)
        {
            let outcome = ReplayOutcome::Applied {
                id: entry.id,
                seq: *seq,
            };
            self.writes.replayed.push(outcome.clone());
            return outcome;
        }
        let outcome = match apply(self.book, &entry.event.kind) {
            Ok(applied) => {
                let result = self.record_applied(&entry.event, applied);
                let seq = result.seq.unwrap_or_default();
                let record = IdempotencyRecord {
                    payload_hash: entry.payload_hash,
                    result,
                };
                self.keys.insert(key.clone(), record.clone());
                self.writes.idempotency.push((key.clone(), Some(record)));
                ReplayOutcome::Applied { id: entry.id, seq }
            }
            Err(Refusal::Quarantine(awaiting)) => {
                let record = IdempotencyRecord {
                    payload_hash: entry.payload_hash,
                    result: EventResult {
                        key: key.clone(),
                        status: EventStatus::Quarantined,
                        seq: None,
                        reason: Some(awaiting.reason()),
                    },
                };
                // A later duplicate in this group must report the new reason.
                self.keys.insert(key.clone(), record.clone());
                self.writes.idempotency.push((key.clone(), Some(record)));
                ReplayOutcome::StillWaiting {
                    id: entry.id,
                    awaiting,
                }
            }
            Err(Refusal::Reject(error)) => {
                // The key is freed so the sender can correct and resend the event.
                self.keys.remove(key);
                self.writes.idempotency.push((key.clone(), None));
                ReplayOutcome::Rejected {
                    id: entry.id,
                    error,
                }
            }
        };
        self.writes.replayed.push(outcome.clone());
        outcome
    }

    /// Ends the group: what to write, and the next free sequence number.
    pub fn finish(self) -> (GroupWrites, u64) {
        (self.writes, self.next_seq)
    }

    fn record_applied(&mut self, event: &Event, applied: Applied) -> EventResult {
        let seq = self.next_seq;
        self.next_seq += 1;
        match &event.kind {
            crate::event::EventKind::Order { order, .. } => {
                self.writes.orders_created.push(order.clone())
            }
            crate::event::EventKind::ReturnReceived { rma_id, .. } => {
                self.writes.returns_received.push(rma_id.clone())
            }
            _ => {}
        }
        self.writes.ledger.push(LedgerEntry {
            seq,
            event: event.clone(),
            received_at: self.received_at,
            changes: applied.changes,
            notes: applied.notes,
        });
        EventResult {
            key: event.key.clone(),
            status: EventStatus::Applied,
            seq: Some(seq),
            reason: None,
        }
    }

    fn lengths(&self) -> Lengths {
        Lengths {
            idempotency: self.writes.idempotency.len(),
            ledger: self.writes.ledger.len(),
            quarantined: self.writes.quarantined.len(),
            next_seq: self.next_seq,
            orders_created: self.writes.orders_created.len(),
            returns_received: self.writes.returns_received.len(),
        }
    }

    fn truncate(&mut self, to: Lengths) {
        self.writes.idempotency.truncate(to.idempotency);
        self.writes.ledger.truncate(to.ledger);
        self.writes.quarantined.truncate(to.quarantined);
        self.next_seq = to.next_seq;
        self.writes.orders_created.truncate(to.orders_created);
        self.writes.returns_received.truncate(to.returns_received);
    }
}

/// How far a group's writes reached before a request, to truncate back to.
struct Lengths {
    idempotency: usize,
    ledger: usize,
    quarantined: usize,
    next_seq: u64,
    orders_created: usize,
    returns_received: usize,
}
