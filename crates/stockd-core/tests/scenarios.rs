//! Scenario tests of the ledger and of idempotent groups, data-driven through
//! one `check(script, expect)` helper.
//!
//! A script is one request per line; `;` puts several events in one request.
//! Events are written as
//!
//! ```text
//! receipt SKU LOC QTY            adjust SKU LOC DELTA      count SKU LOC ON_HAND
//! order ORDER LINE...            LINE = id:sku:qty[@loc]   ORDER = id or channel/id
//! cancel ORDER [LINE...]         ship ORDER [LINE...]      LINE = id[:qty][@loc][=sku]
//! return RMA SKU LOC QTY         verify RMA SKU LOC SELLABLE UNSELLABLE
//! inbound PO SKU LOC QTY [ETA] [confirmed]                 received PO SKU LOC QTY
//! ```
//!
//! An event gets the key `eN` (N counts events from 1) unless it starts with
//! `#key`. Directives: `locations ID=PRIO ID=PRIO- ...` (first line only;
//! `-` means not sellable; default `W1=2 W2=1 Q=0-`), `load SKU` (the variant
//! appears in the catalog), `replay` (replays every quarantined event, in
//! arrival order), `keys` (prints the stored idempotency records).
//! Variants `A` and `B` are always loaded.
//!
//! The expectation lists one line per request or replayed event, then the
//! state: every non-zero stock row, every order and inbound line named.
//! Requests between directives run in one `Group`, as a store would run them.

use chrono::{DateTime, Utc};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use stockd_core::event::{LineInput, LineQty, OrderLine};
use stockd_core::group::{GroupWrites, IdempotencyRecord, Quarantined, ReplayOutcome};
use stockd_core::ledger::StockDelta;
use stockd_core::stock::{stock_view, InboundKey, InboundLine, Quantities, StockKey};
use stockd_core::{
    ledger, Awaiting, Book, Event, EventError, EventInput, EventKind, EventResult, EventStatus,
    Group, IdempotencyKey, Location, LocationId, Needs, Note, OrderRef, PayloadHash, PoId, Refusal,
    RequestError, Sku, Submission,
};

// ---------------------------------------------------------------------------
// The harness: a tiny in-memory store around `Group`.

#[track_caller]
fn check(script: &str, expect: &str) {
    let actual = run(script);
    let expect = normalize(expect);
    if actual != expect {
        panic!(
            "scenario failed\n--- script\n{}\n--- expected\n{expect}\n--- actual\n{actual}\n",
            normalize(script)
        );
    }
}

fn normalize(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn id<T>(parse: fn(String) -> Result<T, stockd_core::ids::IdError>, raw: &str) -> T {
    parse(raw.to_string()).unwrap_or_else(|e| panic!("bad id {raw:?}: {e}"))
}

fn sku(raw: &str) -> Sku {
    id(Sku::parse, raw)
}

fn loc_id(raw: &str) -> LocationId {
    id(LocationId::parse, raw)
}

fn location(raw: &str, sellable: bool, priority: i32) -> Location {
    Location {
        id: loc_id(raw),
        name: format!("location {raw}"),
        sellable,
        priority,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A stand-in for the SHA-256 of the canonical payload: distinct payloads get
/// distinct hashes, the key is not part of it.
fn payload_hash(event: &Event) -> PayloadHash {
    let payload = format!(
        "{:?}|{:?}|{:?}",
        event.kind, event.occurred_at, event.source
    );
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = DefaultHasher::new();
        (i, &payload).hash(&mut h);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    PayloadHash(bytes)
}

fn order_ref(raw: &str) -> OrderRef {
    match raw.split_once('/') {
        Some((channel, order_id)) => OrderRef {
            channel: Some(id(stockd_core::ChannelId::parse, channel)),
            order_id: id(stockd_core::OrderId::parse, order_id),
        },
        None => OrderRef {
            channel: None,
            order_id: id(stockd_core::OrderId::parse, raw),
        },
    }
}

fn num(raw: &str) -> i64 {
    raw.parse()
        .unwrap_or_else(|_| panic!("not a number: {raw:?}"))
}

/// Parses one event of the script language into a validated event.
fn parse_event(text: &str, default_key: String) -> Event {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let key = match words.first() {
        Some(w) if w.starts_with('#') => {
            let key = w[1..].to_string();
            words.remove(0);
            key
        }
        _ => default_key,
    };
    let mut input = EventInput {
        key: Some(key),
        kind: Some(words[0].to_string()),
        ..EventInput::default()
    };
    let args = &words[1..];
    if let ("order" | "cancel" | "ship", Some(raw)) = (words[0], args.first()) {
        match raw.split_once('/') {
            Some((channel, order_id)) => {
                input.channel = Some(channel.into());
                input.order_id = Some(order_id.into());
            }
            None => input.order_id = Some(raw.to_string()),
        }
    }
    match (words[0], args) {
        ("receipt", [s, l, q]) => {
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.qty = Some(num(q));
        }
        ("adjust", [s, l, d]) => {
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.delta = Some(num(d));
            input.reason = Some("damaged".into());
        }
        ("count", [s, l, q]) => {
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.on_hand = Some(num(q));
        }
        ("order", [_, lines @ ..]) => {
            let lines = lines
                .iter()
                .map(|raw| {
                    let (raw, location) = match raw.split_once('@') {
                        Some((raw, l)) => (raw, Some(l.to_string())),
                        None => (*raw, None),
                    };
                    let parts: Vec<&str> = raw.split(':').collect();
                    let [line_id, s, q] = parts[..] else {
                        panic!("bad order line {raw:?}")
                    };
                    LineInput {
                        line_id: Some(line_id.into()),
                        sku: Some(s.into()),
                        qty: Some(num(q)),
                        location,
                    }
                })
                .collect();
            input.lines = Some(lines);
        }
        ("cancel" | "ship", [_, lines @ ..]) => {
            if !lines.is_empty() {
                let lines = lines
                    .iter()
                    .map(|raw| {
                        let (raw, s) = match raw.split_once('=') {
                            Some((raw, s)) => (raw, Some(s.to_string())),
                            None => (*raw, None),
                        };
                        let (raw, location) = match raw.split_once('@') {
                            Some((raw, l)) => (raw, Some(l.to_string())),
                            None => (raw, None),
                        };
                        let (line_id, qty) = match raw.split_once(':') {
                            Some((line_id, q)) => (line_id, Some(num(q))),
                            None => (raw, None),
                        };
                        LineInput {
                            line_id: Some(line_id.into()),
                            sku: s,
                            qty,
                            location,
                        }
                    })
                    .collect();
                input.lines = Some(lines);
            }
        }
        ("return", [rma, s, l, q]) => {
            input.kind = Some("return_received".into());
            input.rma_id = Some(rma.to_string());
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.qty = Some(num(q));
        }
        ("verify", [rma, good, bad]) => {
            input.kind = Some("return_verified".into());
            input.rma_id = Some(rma.to_string());
            input.sellable_qty = Some(num(good));
            input.unsellable_qty = Some(num(bad));
        }
        ("verify", [rma, s, l, good, bad]) => {
            input.kind = Some("return_verified".into());
            input.rma_id = Some(rma.to_string());
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.sellable_qty = Some(num(good));
            input.unsellable_qty = Some(num(bad));
        }
        ("inbound", [po, s, l, q, rest @ ..]) => {
            input.po_id = Some(po.to_string());
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.qty = Some(num(q));
            for word in rest {
                if *word == "confirmed" {
                    input.confirmed = Some(true);
                } else {
                    input.eta = Some(word.to_string());
                }
            }
        }
        ("received", [po, s, l, q]) => {
            input.kind = Some("inbound_received".into());
            input.po_id = Some(po.to_string());
            input.sku = Some(s.to_string());
            input.location = Some(l.to_string());
            input.qty = Some(num(q));
        }
        _ => panic!("bad event {text:?}"),
    }
    Event::validate(&input).unwrap_or_else(|e| panic!("invalid event {text:?}: {e:?}"))
}

/// What a store keeps between groups.
#[derive(Default)]
struct Store {
    keys: HashMap<IdempotencyKey, IdempotencyRecord>,
    quarantine: Vec<Quarantined>,
    next_quarantine_id: i64,
    notes: BTreeMap<u64, Vec<Note>>,
    next_seq: u64,
}

impl Store {
    /// The records a group over these events needs, as a store would load them.
    fn keys_for(&self, needs: &Needs) -> HashMap<IdempotencyKey, IdempotencyRecord> {
        needs
            .keys
            .iter()
            .filter_map(|k| self.keys.get(k).map(|r| (k.clone(), r.clone())))
            .collect()
    }

    fn absorb(&mut self, writes: GroupWrites, next_seq: u64) {
        for (key, record) in writes.idempotency {
            match record {
                Some(record) => self.keys.insert(key, record),
                None => self.keys.remove(&key),
            };
        }
        for entry in writes.ledger {
            assert!(entry.seq >= self.next_seq, "sequence numbers go forward");
            self.notes.insert(entry.seq, entry.notes);
        }
        for replayed in &writes.replayed {
            let id = match replayed {
                ReplayOutcome::Applied { id, .. } | ReplayOutcome::Rejected { id, .. } => *id,
                ReplayOutcome::StillWaiting { .. } => continue,
            };
            self.quarantine.retain(|q| q.id != id);
        }
        for entry in writes.quarantined {
            self.next_quarantine_id += 1;
            self.quarantine.push(Quarantined {
                id: self.next_quarantine_id,
                event: entry.event,
                payload_hash: entry.payload_hash,
            });
        }
        self.next_seq = next_seq;
    }
}

enum Step {
    Requests(Vec<Vec<Submission>>),
    Load(Sku),
    Replay,
    Keys,
}

fn run(script: &str) -> String {
    let mut lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut locations = vec![
        location("W1", true, 2),
        location("W2", true, 1),
        location("Q", false, 0),
    ];
    if let Some(first) = lines.first() {
        if let Some(rest) = first.strip_prefix("locations") {
            locations = rest
                .split_whitespace()
                .map(|raw| {
                    let (name, prio) = raw.split_once('=').expect("ID=PRIO");
                    let sellable = !prio.ends_with('-');
                    location(name, sellable, num(prio.trim_end_matches('-')) as i32)
                })
                .collect();
            lines.remove(0);
        }
    }
    let mut skus = vec![sku("A"), sku("B")];
    let mut book = Book::new(locations.clone());
    for s in &skus {
        book.load_variant(s.clone());
    }

    // Parse the script into steps, numbering events as they come.
    let mut steps: Vec<Step> = Vec::new();
    let mut n = 0;
    let mut orders: Vec<OrderRef> = Vec::new();
    let mut inbound: Vec<InboundKey> = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["load", s] => steps.push(Step::Load(sku(s))),
            ["replay"] => steps.push(Step::Replay),
            ["keys"] => steps.push(Step::Keys),
            _ => {
                let request: Vec<Submission> = line
                    .split(';')
                    .map(|text| {
                        n += 1;
                        let event = parse_event(text, format!("e{n}"));
                        note_names(&event.kind, &mut skus, &mut orders, &mut inbound);
                        let payload_hash = payload_hash(&event);
                        Submission {
                            event,
                            payload_hash,
                        }
                    })
                    .collect();
                match steps.last_mut() {
                    Some(Step::Requests(requests)) => requests.push(request),
                    _ => steps.push(Step::Requests(vec![request])),
                }
            }
        }
    }

    let mut store = Store {
        next_seq: 1,
        ..Store::default()
    };
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Load(s) => book.load_variant(s),
            Step::Keys => {
                let mut keys: Vec<_> = store.keys.iter().collect();
                keys.sort_by(|a, b| a.0.cmp(b.0));
                let keys: Vec<String> = keys
                    .into_iter()
                    .map(|(k, r)| format!("{k}={}", render_result(&r.result)))
                    .collect();
                writeln!(out, "keys {}", keys.join(" ")).unwrap();
            }
            Step::Requests(requests) => {
                let needs = Needs::of(requests.iter().flatten().map(|s| &s.event));
                let mut group =
                    Group::new(&mut book, store.keys_for(&needs), store.next_seq, now());
                let results: Vec<_> = requests.iter().map(|r| group.submit(r)).collect();
                let (writes, next_seq) = group.finish();
                store.absorb(writes, next_seq);
                for result in results {
                    writeln!(out, "{}", render_request(&result, &store)).unwrap();
                }
            }
            Step::Replay => {
                let pending = store.quarantine.clone();
                let needs = Needs::of(pending.iter().map(|q| &q.event));
                let mut group =
                    Group::new(&mut book, store.keys_for(&needs), store.next_seq, now());
                let outcomes: Vec<_> = pending.iter().map(|q| group.replay(q)).collect();
                let (writes, next_seq) = group.finish();
                let freed: Vec<String> = writes
                    .idempotency
                    .iter()
                    .filter(|(_, r)| r.is_none())
                    .map(|(k, _)| k.to_string())
                    .collect();
                store.absorb(writes, next_seq);
                for (q, outcome) in pending.iter().zip(outcomes) {
                    let text = match outcome {
                        ReplayOutcome::Applied { seq, .. } => {
                            format!("applied {seq}{}", render_notes(&store.notes[&seq]))
                        }
                        ReplayOutcome::StillWaiting { awaiting, .. } => {
                            format!("waiting {}", awaiting.reason())
                        }
                        ReplayOutcome::Rejected { error, .. } => render_error(&error),
                    };
                    writeln!(out, "replay {}: {text}", q.event.key).unwrap();
                }
                for key in freed {
                    writeln!(out, "freed {key}").unwrap();
                }
            }
        }
    }
    out.push_str(&render_book(&book, &locations, &skus, &orders, &inbound));
    normalize(&out)
}

fn note_names(
    kind: &EventKind,
    skus: &mut Vec<Sku>,
    orders: &mut Vec<OrderRef>,
    inbound: &mut Vec<InboundKey>,
) {
    for s in kind.skus() {
        if !skus.contains(s) {
            skus.push(s.clone());
        }
    }
    if let Some(order) = kind.order_ref() {
        if !orders.contains(order) {
            orders.push(order.clone());
        }
    }
    if let EventKind::Inbound {
        po_id,
        sku,
        location,
        ..
    }
    | EventKind::InboundReceived {
        po_id,
        sku,
        location,
        ..
    } = kind
    {
        let key = InboundKey {
            po_id: po_id.clone(),
            sku: sku.clone(),
            location: location.clone(),
        };
        if !inbound.contains(&key) {
            inbound.push(key);
        }
    }
}

fn render_result(result: &EventResult) -> String {
    match (result.status, result.seq) {
        (EventStatus::Applied, Some(seq)) => format!("applied {seq}"),
        (EventStatus::Duplicate, Some(seq)) => format!("duplicate {seq}"),
        (EventStatus::Duplicate, None) => format!(
            "duplicate ({})",
            result.reason.as_deref().unwrap_or("no reason")
        ),
        (EventStatus::Quarantined, None) => format!(
            "quarantined ({})",
            result.reason.as_deref().unwrap_or("no reason")
        ),
        (status, seq) => format!("odd {status:?} {seq:?}"),
    }
}

fn render_error(error: &EventError) -> String {
    format!("{}: {error}", error.code())
}

fn render_notes(notes: &[Note]) -> String {
    let mut out = String::new();
    for note in notes {
        let text = match note {
            Note::Oversell {
                line_id,
                sku,
                location,
                shortfall_qty,
            } => format!("oversell {line_id} {sku}@{location} short {shortfall_qty}"),
            Note::BelowReserved {
                sku,
                location,
                on_hand,
                reserved,
            } => format!("below reserved {sku}@{location} {on_hand} < {reserved}"),
            Note::OverReceived {
                po_id,
                sku,
                location,
                extra_qty,
            } => format!("over received {po_id} {sku}@{location} extra {extra_qty}"),
        };
        write!(out, " | {text}").unwrap();
    }
    out
}

fn render_request(result: &Result<Vec<EventResult>, RequestError>, store: &Store) -> String {
    match result {
        Ok(results) => results
            .iter()
            .map(|r| {
                let mut text = render_result(r);
                if r.status == EventStatus::Applied {
                    text.push_str(&render_notes(&store.notes[&r.seq.unwrap()]));
                }
                text
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(RequestError::KeyReused { index, key }) => format!("key reused [{index}] {key}"),
        Err(RequestError::Rejected { index, error }) => {
            format!("rejected [{index}] {}", render_error(error))
        }
    }
}

fn render_book(
    book: &Book,
    locations: &[Location],
    skus: &[Sku],
    orders: &[OrderRef],
    inbound: &[InboundKey],
) -> String {
    let mut out = String::from("--\n");
    for s in skus {
        for l in locations {
            let q = book.quantities(&StockKey {
                sku: s.clone(),
                location: l.id.clone(),
            });
            if q == Quantities::default() {
                continue;
            }
            let mut row = format!("{s}@{}", l.id);
            for (name, v) in [
                ("on_hand", q.on_hand),
                ("reserved", q.reserved),
                ("pending_return", q.pending_return),
                ("written_off", q.written_off),
            ] {
                if v != 0 {
                    write!(row, " {name}={v}").unwrap();
                }
            }
            writeln!(out, "{row}").unwrap();
        }
    }
    for order in orders {
        let Some(rows) = book.order_lines(order) else {
            continue;
        };
        if rows.is_empty() {
            writeln!(out, "order {order} has no rows").unwrap();
        }
        for r in rows {
            let mut row = format!(
                "{order}/{}.{} {}@{} ordered={}",
                r.line_id, r.alloc_index, r.sku, r.location, r.ordered_qty
            );
            if r.shipped_qty != 0 {
                write!(row, " shipped={}", r.shipped_qty).unwrap();
            }
            if r.cancelled_qty != 0 {
                write!(row, " cancelled={}", r.cancelled_qty).unwrap();
            }
            writeln!(out, "{row}").unwrap();
        }
    }
    for key in inbound {
        if let Some(line) = book.inbound_line(key) {
            let eta = line.eta.map_or("-".to_string(), |d| d.to_string());
            let confirmed = if line.confirmed { " confirmed" } else { "" };
            writeln!(
                out,
                "{} {}@{} inbound={} eta={eta}{confirmed}",
                line.po_id, line.sku, line.location, line.qty
            )
            .unwrap();
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Receipts, adjusts and counts.

#[test]
fn receipt_adjust_count() {
    check(
        "receipt A W1 10
         adjust A W1 -3
         adjust A W1 2
         count A W1 4
         receipt B Q 1",
        "applied 1
         applied 2
         applied 3
         applied 4
         applied 5
         --
         A@W1 on_hand=4
         B@Q on_hand=1",
    );
}

#[test]
fn adjust_below_zero_is_refused() {
    check(
        "receipt A W1 2
         adjust A W1 -3
         adjust A W2 -1
         #e2 adjust A W1 -2",
        "applied 1
         rejected [0] negative_on_hand: A at W1: on_hand 2 would become negative
         rejected [0] negative_on_hand: A at W2: on_hand 0 would become negative
         applied 2
         --",
    );
}

#[test]
fn count_or_adjust_below_reserved_is_noted() {
    check(
        "receipt A W2 5
         order o1 1:A:4
         count A W2 3
         adjust A W2 -1
         count A W2 6",
        "applied 1
         applied 2
         applied 3 | below reserved A@W2 3 < 4
         applied 4 | below reserved A@W2 2 < 4
         applied 5
         --
         A@W2 on_hand=6 reserved=4
         o1/1.0 A@W2 ordered=4",
    );
}

// ---------------------------------------------------------------------------
// Orders: allocation across sellable locations by priority.

#[test]
fn order_takes_the_first_sellable_location_by_priority() {
    // W2 has priority 1, W1 priority 2; Q is not sellable (priority 0).
    check(
        "receipt A W1 5; receipt A W2 5; receipt A Q 9
         order o1 1:A:3",
        "applied 1, applied 2, applied 3
         applied 4
         --
         A@W1 on_hand=5
         A@W2 on_hand=5 reserved=3
         A@Q on_hand=9
         o1/1.0 A@W2 ordered=3",
    );
}

#[test]
fn order_splits_across_locations() {
    check(
        "receipt A W1 5; receipt A W2 2; receipt A Q 9
         order o1 1:A:4",
        "applied 1, applied 2, applied 3
         applied 4
         --
         A@W1 on_hand=5 reserved=2
         A@W2 on_hand=2 reserved=2
         A@Q on_hand=9
         o1/1.0 A@W2 ordered=2
         o1/1.1 A@W1 ordered=2",
    );
}

#[test]
fn shortfall_is_an_oversell_reserved_at_the_first_location() {
    check(
        "receipt A W1 1; receipt A W2 2; receipt A Q 9
         order o1 1:A:5",
        "applied 1, applied 2, applied 3
         applied 4 | oversell 1 A@W2 short 2
         --
         A@W1 on_hand=1 reserved=1
         A@W2 on_hand=2 reserved=4
         A@Q on_hand=9
         o1/1.0 A@W2 ordered=4
         o1/1.1 A@W1 ordered=1",
    );
    // The first location had nothing: the shortfall comes first.
    check(
        "receipt A W1 1
         order o1 1:A:3",
        "applied 1
         applied 2 | oversell 1 A@W2 short 2
         --
         A@W1 on_hand=1 reserved=1
         A@W2 reserved=2
         o1/1.0 A@W2 ordered=2
         o1/1.1 A@W1 ordered=1",
    );
    check(
        "order o1 1:A:2",
        "applied 1 | oversell 1 A@W2 short 2
         --
         A@W2 reserved=2
         o1/1.0 A@W2 ordered=2",
    );
}

#[test]
fn later_lines_see_what_earlier_lines_reserved() {
    check(
        "receipt A W2 3
         order o1 1:A:2 2:A:2 3:B:1",
        "applied 1
         applied 2 | oversell 2 A@W2 short 1 | oversell 3 B@W2 short 1
         --
         A@W2 on_hand=3 reserved=4
         B@W2 reserved=1
         o1/1.0 A@W2 ordered=2
         o1/2.0 A@W2 ordered=2
         o1/3.0 B@W2 ordered=1",
    );
}

#[test]
fn order_with_explicit_location() {
    check(
        "receipt A W1 5; receipt A W2 5
         order o1 1:A:2@W1 2:A:7@W1",
        "applied 1, applied 2
         applied 3 | oversell 2 A@W1 short 4
         --
         A@W1 on_hand=5 reserved=9
         A@W2 on_hand=5
         o1/1.0 A@W1 ordered=2
         o1/2.0 A@W1 ordered=7",
    );
}

#[test]
fn orders_of_two_channels_are_distinct() {
    check(
        "receipt A W2 5
         order shop/1001 1:A:1
         order amz/1001 1:A:2
         cancel shop/1001",
        "applied 1
         applied 2
         applied 3
         applied 4
         --
         A@W2 on_hand=5 reserved=2
         shop/1001/1.0 A@W2 ordered=1 cancelled=1
         amz/1001/1.0 A@W2 ordered=2",
    );
}

#[test]
fn order_line_cannot_be_sent_twice() {
    check(
        "receipt A W2 5
         order o1 1:A:2
         order o1 2:A:1 1:A:2
         order o1 2:A:1",
        "applied 1
         applied 2
         rejected [0] order_line_exists: order o1 already has line 1
         applied 3
         --
         A@W2 on_hand=5 reserved=3
         o1/1.0 A@W2 ordered=2
         o1/2.0 A@W2 ordered=1",
    );
}

// ---------------------------------------------------------------------------
// Cancel and ship.

#[test]
fn cancel_whole_order_lines_and_partial_qty() {
    check(
        "receipt A W2 10
         order o1 1:A:3 2:A:2 3:B:1
         cancel o1 1:1
         cancel o1 2
         cancel o1
         cancel o1",
        "applied 1
         applied 2 | oversell 3 B@W2 short 1
         applied 3
         applied 4
         applied 5
         rejected [0] nothing_reserved: order o1 has nothing reserved
         --
         A@W2 on_hand=10
         o1/1.0 A@W2 ordered=3 cancelled=3
         o1/2.0 A@W2 ordered=2 cancelled=2
         o1/3.0 B@W2 ordered=1 cancelled=1",
    );
}

#[test]
fn ship_whole_order_and_given_lines() {
    check(
        "receipt A W2 5; receipt B W2 5
         order o1 1:A:2 2:B:3
         ship o1 2
         ship o1
         ship o1",
        "applied 1, applied 2
         applied 3
         applied 4
         applied 5
         rejected [0] nothing_reserved: order o1 has nothing reserved
         --
         A@W2 on_hand=3
         B@W2 on_hand=2
         o1/1.0 A@W2 ordered=2 shipped=2
         o1/2.0 B@W2 ordered=3 shipped=3",
    );
}

#[test]
fn ship_takes_the_first_choice_and_cancel_the_last() {
    check(
        "receipt A W2 2; receipt A W1 5
         order o1 1:A:4
         cancel o1 1:1
         ship o1 1:2
         ship o1",
        "applied 1, applied 2
         applied 3
         applied 4
         applied 5
         applied 6
         --
         A@W1 on_hand=4
         o1/1.0 A@W2 ordered=2 shipped=2
         o1/1.1 A@W1 ordered=2 shipped=1 cancelled=1",
    );
    // A location narrows the rows of the line.
    check(
        "receipt A W2 2; receipt A W1 5
         order o1 1:A:4
         cancel o1 1:1@W2
         ship o1 1:2@W2",
        "applied 1, applied 2
         applied 3
         applied 4
         rejected [0] reservation_exceeded: line 1: 2 requested but only 1 reserved
         --
         A@W1 on_hand=5 reserved=2
         A@W2 on_hand=2 reserved=1
         o1/1.0 A@W2 ordered=2 cancelled=1
         o1/1.1 A@W1 ordered=2",
    );
}

#[test]
fn ship_takes_stock_where_it_is() {
    // Line 1 is W2 (oversold, nothing there) then W1 (3 on hand): the goods
    // leave W1; W2 keeps its reservation of 2, still oversold.
    check(
        "receipt A W1 3
         order o1 1:A:5
         ship o1 1:3",
        "applied 1
         applied 2 | oversell 1 A@W2 short 2
         applied 3
         --
         A@W2 reserved=2
         o1/1.0 A@W2 ordered=2
         o1/1.1 A@W1 ordered=3 shipped=3",
    );
    // A row takes what its location has, then the next row; what no location
    // holds leaves from the first choice, whose on_hand goes negative.
    check(
        "receipt A W2 2; receipt A W1 1
         order o1 1:A:5
         ship o1 1:3
         ship o1 1:1",
        "applied 1, applied 2
         applied 3 | oversell 1 A@W2 short 2
         applied 4
         applied 5
         --
         A@W2 on_hand=-1 reserved=1
         o1/1.0 A@W2 ordered=4 shipped=3
         o1/1.1 A@W1 ordered=1 shipped=1",
    );
    check(
        "receipt A W1 1
         order o1 1:A:3
         ship o1 1:2",
        "applied 1
         applied 2 | oversell 1 A@W2 short 2
         applied 3
         --
         A@W2 on_hand=-1 reserved=1
         o1/1.0 A@W2 ordered=2 shipped=1
         o1/1.1 A@W1 ordered=1 shipped=1",
    );
    // Nothing anywhere: a ship is a fact from the warehouse, it goes through.
    check(
        "order o1 1:A:2
         ship o1",
        "applied 1 | oversell 1 A@W2 short 2
         applied 2
         --
         A@W2 on_hand=-2
         o1/1.0 A@W2 ordered=2 shipped=2",
    );
    // A location narrows the rows even when another location has the stock.
    check(
        "receipt A W1 3
         order o1 1:A:5
         ship o1 1:1@W2",
        "applied 1
         applied 2 | oversell 1 A@W2 short 2
         applied 3
         --
         A@W1 on_hand=3 reserved=3
         A@W2 on_hand=-1 reserved=1
         o1/1.0 A@W2 ordered=2 shipped=1
         o1/1.1 A@W1 ordered=3",
    );
}

#[test]
fn ship_counts_what_its_earlier_lines_took() {
    // Line 1 ships W2's 2 units; line 2 (W2 oversold, then W1) must not take
    // them again: its 2 units leave W1.
    check(
        "receipt A W2 2; receipt A W1 2
         order o1 1:A:2 2:A:4
         ship o1 1 2:2",
        "applied 1, applied 2
         applied 3 | oversell 2 A@W2 short 2
         applied 4
         --
         A@W2 reserved=2
         o1/1.0 A@W2 ordered=2 shipped=2
         o1/2.0 A@W2 ordered=2
         o1/2.1 A@W1 ordered=2 shipped=2",
    );
    // One unit more than W1 holds: it leaves from line 2's first choice, W2,
    // which goes negative.
    check(
        "receipt A W2 2; receipt A W1 2
         order o1 1:A:2 2:A:4
         ship o1 1 2:3",
        "applied 1, applied 2
         applied 3 | oversell 2 A@W2 short 2
         applied 4
         --
         A@W2 on_hand=-1 reserved=1
         o1/1.0 A@W2 ordered=2 shipped=2
         o1/2.0 A@W2 ordered=2 shipped=1
         o1/2.1 A@W1 ordered=2 shipped=2",
    );
}

#[test]
fn adjust_up_from_negative_on_hand() {
    // A ship left W2 at -2: an increase is applied (and noted, on_hand being
    // below what is reserved); a decrease below zero is still refused.
    check(
        "order o1 1:A:2
         ship o1
         adjust A W2 1
         adjust A W2 -1
         adjust A W2 4",
        "applied 1 | oversell 1 A@W2 short 2
         applied 2
         applied 3 | below reserved A@W2 -1 < 0
         rejected [0] negative_on_hand: A at W2: on_hand -1 would become negative
         applied 4
         --
         A@W2 on_hand=3
         o1/1.0 A@W2 ordered=2 shipped=2",
    );
}

#[test]
fn settling_more_than_reserved_is_refused() {
    check(
        "receipt A W2 5
         order o1 1:A:2
         cancel o1 1:3
         ship o1 1:3
         ship o1 1:2; cancel o1 1:1
         cancel o1 1
         cancel o1 1",
        "applied 1
         applied 2
         rejected [0] reservation_exceeded: line 1: 3 requested but only 2 reserved
         rejected [0] reservation_exceeded: line 1: 3 requested but only 2 reserved
         rejected [1] reservation_exceeded: line 1: 1 requested but only 0 reserved
         applied 3
         rejected [0] reservation_exceeded: line 1: 0 requested but only 0 reserved
         --
         A@W2 on_hand=5
         o1/1.0 A@W2 ordered=2 cancelled=2",
    );
}

#[test]
fn unknown_line_and_wrong_sku_are_refused() {
    check(
        "receipt A W2 5
         order o1 1:A:2
         cancel o1 9
         cancel o1 1 9
         ship o1 1=B
         ship o1 1:1=A",
        "applied 1
         applied 2
         rejected [0] unknown_order_line: order o1 has no line 9
         rejected [0] unknown_order_line: order o1 has no line 9
         rejected [0] line_sku_mismatch: line 1 is for sku A, not B
         applied 3
         --
         A@W2 on_hand=4 reserved=1
         o1/1.0 A@W2 ordered=2 shipped=1",
    );
}

// ---------------------------------------------------------------------------
// Returns and inbound.

#[test]
fn returns_are_pending_until_verified() {
    check(
        "return R1 A W1 3
         verify R1 A W1 2 1
         verify R1 A W1 1 0
         return R2 A W1 2
         verify R2 A W1 1 2
         verify R2 A W1 0 2",
        "applied 1
         applied 2
         rejected [0] return_exceeded: rma R1: 1 verified but only 0 pending return
         applied 3
         rejected [0] return_exceeded: rma R2: 3 verified but only 2 pending return
         applied 4
         --
         A@W1 on_hand=2 written_off=3",
    );
    check(
        "return R1 A W1 3",
        "applied 1
         --
         A@W1 pending_return=3",
    );
}

#[test]
fn inbound_upsert_and_receipt() {
    check(
        "inbound PO1 A W1 10 2026-12-01 confirmed
         inbound PO1 A W1 6 2026-12-03 confirmed
         received PO1 A W1 4
         received PO1 A W1 5
         received PO2 A W1 1",
        "applied 1
         applied 2
         applied 3
         applied 4 | over received PO1 A@W1 extra 3
         applied 5 | over received PO2 A@W1 extra 1
         --
         A@W1 on_hand=10
         PO1 A@W1 inbound=0 eta=2026-12-03 confirmed",
    );
    // An inbound event replaces the whole line, eta and confirmation included.
    check(
        "inbound PO1 B W2 10 2026-12-01 confirmed
         inbound PO1 B W2 7
         inbound PO3 B W2 0",
        "applied 1
         applied 2
         applied 3
         --
         PO1 B@W2 inbound=7 eta=-
         PO3 B@W2 inbound=0 eta=-",
    );
}

#[test]
fn inbound_qty_is_what_is_still_expected() {
    // After a partial receipt the sender sends what remains: nothing changes.
    check(
        "inbound PO1 A W1 10 2026-12-01
         received PO1 A W1 4
         inbound PO1 A W1 6 2026-12-01",
        "applied 1
         applied 2
         applied 3
         --
         A@W1 on_hand=4
         PO1 A@W1 inbound=6 eta=2026-12-01",
    );
    // The quantity is absolute: resending the first quantity expects it all again.
    check(
        "inbound PO1 A W1 10 2026-12-01
         received PO1 A W1 4
         inbound PO1 A W1 10 2026-12-01",
        "applied 1
         applied 2
         applied 3
         --
         A@W1 on_hand=4
         PO1 A@W1 inbound=10 eta=2026-12-01",
    );
}

#[test]
fn returns_are_tracked_per_rma() {
    // A verification settles its own RMA only: R9 was never received, so it
    // waits (and is replayed when R9 arrives); R3's units at W1 are R1's and
    // R2's, not R3's.
    check(
        "return R1 A W1 2
         return R2 A W1 1
         return R3 A W2 1
         verify R9 A W1 2 1
         verify R3 A W1 1 0
         verify R3 2 0
         verify R3 1 0
         return R9 A W1 3
         replay",
        "applied 1
         applied 2
         applied 3
         quarantined (rma R9 not received yet)
         rejected [0] return_mismatch: rma R3 received nothing of the given sku and location
         rejected [0] return_exceeded: rma R3: 2 verified but only 1 pending return
         applied 4
         applied 5
         replay e4: applied 6
         --
         A@W1 on_hand=2 pending_return=3 written_off=1
         A@W2 on_hand=1",
    );
}

#[test]
fn an_rma_received_in_parts_and_lines_is_verified_by_its_id() {
    // Two parts of one line, a second SKU, then one verification by RMA id:
    // sellable units fill the lines in the order received.
    check(
        "return R1 A W1 1
         return R1 A W1 2
         return R1 B W2 2
         verify R1 4 1
         verify R1 1 0",
        "applied 1
         applied 2
         applied 3
         applied 4
         rejected [0] return_exceeded: rma R1: 1 verified but only 0 pending return
         --
         A@W1 on_hand=3
         B@W2 on_hand=1 written_off=1",
    );
}

// ---------------------------------------------------------------------------
// Quarantine and replay.

#[test]
fn unknown_names_are_quarantined() {
    check(
        "receipt X W1 5
         receipt A Z 5
         cancel o1
         ship o1 1
         order o1 1:X:1
         order o2 1:A:1@Z
         order o3 1:A:1 2:X:1",
        "quarantined (unknown sku X)
         quarantined (unknown location Z)
         quarantined (unknown order o1)
         quarantined (unknown order o1)
         quarantined (unknown sku X)
         quarantined (unknown location Z)
         quarantined (unknown sku X)
         --",
    );
}

#[test]
fn order_without_location_waits_for_a_sellable_location() {
    check(
        "locations Q=0-
         order o1 1:A:1
         order o2 1:A:1@Q",
        "quarantined (no sellable location exists)
         applied 1 | oversell 1 A@Q short 1
         --
         A@Q reserved=1
         o2/1.0 A@Q ordered=1",
    );
}

#[test]
fn quarantined_events_replay_when_names_appear() {
    check(
        "receipt X W1 5
         receipt A Z 5
         cancel o1
         order o1 1:X:1
         load X
         replay
         replay
         keys",
        "quarantined (unknown sku X)
         quarantined (unknown location Z)
         quarantined (unknown order o1)
         quarantined (unknown sku X)
         replay e1: applied 1
         replay e2: waiting unknown location Z
         replay e3: waiting unknown order o1
         replay e4: applied 2
         replay e2: waiting unknown location Z
         replay e3: applied 3
         keys e1=applied 1 e2=quarantined (unknown location Z) e3=applied 3 e4=applied 2
         --
         X@W1 on_hand=5
         o1/1.0 X@W1 ordered=1 cancelled=1",
    );
}

#[test]
fn rejected_replay_frees_the_key() {
    check(
        "order o1 1:X:2
         cancel o1 1:3
         load X
         replay
         keys
         #e2 cancel o1 1:2",
        "quarantined (unknown sku X)
         quarantined (unknown order o1)
         replay e1: applied 1 | oversell 1 X@W2 short 2
         replay e2: reservation_exceeded: line 1: 3 requested but only 2 reserved
         freed e2
         keys e1=applied 1
         applied 2
         --
         o1/1.0 X@W2 ordered=2 cancelled=2",
    );
}

#[test]
fn duplicate_of_a_quarantined_event() {
    check(
        "receipt X W1 5
         #e1 receipt X W1 5
         #e1 receipt X W1 6
         load X
         #e1 receipt X W1 5
         replay
         #e1 receipt X W1 5",
        "quarantined (unknown sku X)
         duplicate (unknown sku X)
         key reused [0] e1
         duplicate (unknown sku X)
         replay e1: applied 1
         duplicate 1
         --
         X@W1 on_hand=5",
    );
}

// ---------------------------------------------------------------------------
// Requests: atomicity and idempotency.

#[test]
fn a_refused_event_undoes_its_whole_request() {
    check(
        "receipt A W2 5
         order o1 1:A:2; receipt B W1 3; adjust A W2 -9; receipt A W1 1
         #e2 order o1 1:A:2
         #e3 receipt B W1 3
         keys",
        "applied 1
         rejected [2] negative_on_hand: A at W2: on_hand 5 would become negative
         applied 2
         applied 3
         keys e1=applied 1 e2=applied 2 e3=applied 3
         --
         A@W2 on_hand=5 reserved=2
         B@W1 on_hand=3
         o1/1.0 A@W2 ordered=2",
    );
    // Nothing of a refused request stays: no order rows, no quarantine.
    check(
        "order o1 1:A:2; receipt X W1 1; adjust A W1 -1
         replay
         keys",
        "rejected [2] negative_on_hand: A at W1: on_hand 0 would become negative
         keys
         --",
    );
}

#[test]
fn same_key_same_payload_is_a_duplicate() {
    check(
        "receipt A W1 5
         order o1 1:A:2
         #e1 receipt A W1 5
         #e2 order o1 1:A:2
         keys
         #e1 receipt A W1 5",
        "applied 1
         applied 2
         duplicate 1
         duplicate 2
         keys e1=applied 1 e2=applied 2
         duplicate 1
         --
         A@W1 on_hand=5 reserved=2
         o1/1.0 A@W1 ordered=2",
    );
}

#[test]
fn same_key_other_payload_is_refused() {
    check(
        "receipt A W1 5
         #e1 receipt A W1 6
         receipt A W1 1; #e1 receipt A W1 6
         keys",
        "applied 1
         key reused [0] e1
         key reused [1] e1
         keys e1=applied 1
         --
         A@W1 on_hand=5",
    );
}

#[test]
fn duplicate_key_inside_one_request() {
    check(
        "receipt A W1 5; #e1 receipt A W1 5
         receipt A W1 2; #e3 receipt A W1 3
         keys",
        "applied 1, duplicate 1
         key reused [1] e3
         keys e1=applied 1
         --
         A@W1 on_hand=5",
    );
}

// ---------------------------------------------------------------------------
// The ledger on its own: what `apply` reports, and the stock view.

fn kind(text: &str) -> EventKind {
    parse_event(text, "k".into()).kind
}

fn delta(sku_id: &str, loc: &str, fields: [i64; 5]) -> StockDelta {
    let [on_hand, reserved, pending_return, written_off, inbound] = fields;
    StockDelta {
        sku: sku(sku_id),
        location: loc_id(loc),
        on_hand,
        reserved,
        pending_return,
        written_off,
        inbound,
    }
}

fn default_book() -> Book {
    let mut book = Book::new([
        location("W1", true, 2),
        location("W2", true, 1),
        location("Q", false, 0),
    ]);
    book.load_variant(sku("A"));
    book.load_variant(sku("B"));
    book
}

#[test]
fn apply_reports_the_changes_it_made() {
    let mut book = default_book();
    let cases: [(&str, Vec<StockDelta>); 11] = [
        ("receipt A W1 5", vec![delta("A", "W1", [5, 0, 0, 0, 0])]),
        (
            "order o1 1:A:7 2:B:1@Q",
            vec![
                delta("A", "W2", [0, 2, 0, 0, 0]),
                delta("A", "W1", [0, 5, 0, 0, 0]),
                delta("B", "Q", [0, 1, 0, 0, 0]),
            ],
        ),
        // Line 1 is W2 (2, oversold) then W1 (5): the ship takes the stock at W1.
        ("ship o1 1:3", vec![delta("A", "W1", [-3, -3, 0, 0, 0])]),
        ("cancel o1 2", vec![delta("B", "Q", [0, -1, 0, 0, 0])]),
        // W1 holds 2 of the 3: the third unit leaves from the first choice.
        (
            "ship o1 1:3",
            vec![
                delta("A", "W2", [-1, -1, 0, 0, 0]),
                delta("A", "W1", [-2, -2, 0, 0, 0]),
            ],
        ),
        ("return R1 A W1 4", vec![delta("A", "W1", [0, 0, 4, 0, 0])]),
        (
            "verify R1 A W1 3 1",
            vec![delta("A", "W1", [3, 0, -4, 1, 0])],
        ),
        (
            "inbound P1 A W1 10",
            vec![delta("A", "W1", [0, 0, 0, 0, 10])],
        ),
        (
            "inbound P1 A W1 6",
            vec![delta("A", "W1", [0, 0, 0, 0, -4])],
        ),
        (
            "received P1 A W1 8",
            vec![delta("A", "W1", [8, 0, 0, 0, -6])],
        ),
        ("count A W1 2", vec![delta("A", "W1", [-9, 0, 0, 0, 0])]),
    ];
    for (text, changes) in cases {
        let applied = ledger::apply(&mut book, &kind(text))
            .unwrap_or_else(|e| panic!("{text}: refused {e:?}"));
        assert_eq!(applied.changes, changes, "{text}");
    }
    let key = StockKey {
        sku: sku("A"),
        location: loc_id("W1"),
    };
    assert_eq!(
        book.quantities(&key),
        Quantities {
            on_hand: 2,
            reserved: 0,
            pending_return: 0,
            written_off: 1,
        }
    );
    let key = StockKey {
        sku: sku("A"),
        location: loc_id("W2"),
    };
    assert_eq!(
        book.quantities(&key),
        Quantities {
            on_hand: -1,
            reserved: 1,
            ..Quantities::default()
        }
    );
}

#[test]
fn apply_refuses_without_a_trace() {
    let mut book = default_book();
    ledger::apply(&mut book, &kind("receipt A W1 2")).unwrap();
    ledger::apply(&mut book, &kind("order o1 1:A:1")).unwrap();
    let cases = [
        (
            "receipt X W1 1",
            Refusal::Quarantine(Awaiting::Variant(sku("X"))),
        ),
        (
            "receipt A Z 1",
            Refusal::Quarantine(Awaiting::Location(loc_id("Z"))),
        ),
        (
            "ship shop/o1",
            Refusal::Quarantine(Awaiting::Order(order_ref("shop/o1"))),
        ),
        (
            "adjust A W1 -3",
            Refusal::Reject(EventError::NegativeOnHand {
                sku: sku("A"),
                location: loc_id("W1"),
                on_hand: 2,
            }),
        ),
        (
            "order o1 2:B:1 1:A:1",
            Refusal::Reject(EventError::OrderLineExists {
                order: "o1".into(),
                line_id: id(stockd_core::LineId::parse, "1"),
            }),
        ),
        (
            "cancel o1 1:2",
            Refusal::Reject(EventError::ReservationExceeded {
                line_id: id(stockd_core::LineId::parse, "1"),
                open: 1,
                requested: 2,
            }),
        ),
    ];
    let before = render_book(
        &book,
        &book.locations().cloned().collect::<Vec<_>>(),
        &[sku("A"), sku("B")],
        &[order_ref("o1")],
        &[],
    );
    for (text, refusal) in cases {
        assert_eq!(
            ledger::apply(&mut book, &kind(text)),
            Err(refusal),
            "{text}"
        );
        let after = render_book(
            &book,
            &book.locations().cloned().collect::<Vec<_>>(),
            &[sku("A"), sku("B")],
            &[order_ref("o1")],
            &[],
        );
        assert_eq!(before, after, "{text} left a trace");
    }
}

#[test]
fn wait_keys_and_reasons() {
    let cases = [
        (Awaiting::Variant(sku("X")), "variant:X", "unknown sku X"),
        (
            Awaiting::Location(loc_id("Z")),
            "location:Z",
            "unknown location Z",
        ),
        (
            Awaiting::SellableLocation,
            "location:*",
            "no sellable location exists",
        ),
        (
            Awaiting::Order(order_ref("shop/1001")),
            "order:shop\t1001",
            "unknown order shop/1001",
        ),
        (
            Awaiting::Order(order_ref("1001")),
            "order:\t1001",
            "unknown order 1001",
        ),
    ];
    for (awaiting, key, reason) in cases {
        assert_eq!(
            (awaiting.wait_key().as_str(), awaiting.reason().as_str()),
            (key, reason)
        );
    }
}

#[test]
fn needs_name_keys_skus_orders_and_inbound_lines() {
    let events: Vec<Event> = [
        "receipt A W1 1",
        "order shop/1 1:B:1 2:C:1",
        "cancel 2",
        "inbound P1 A W1 3",
        "received P2 D W2 1",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| parse_event(text, format!("k{i}")))
    .collect();
    let needs = Needs::of(&events);
    let names = |v: Vec<String>| v.join(" ");
    assert_eq!(
        names(needs.keys.iter().map(|k| k.to_string()).collect()),
        "k0 k1 k2 k3 k4"
    );
    assert_eq!(
        names(needs.skus.iter().map(|k| k.to_string()).collect()),
        "A B C D"
    );
    assert_eq!(
        names(needs.orders.iter().map(|k| k.to_string()).collect()),
        "2 shop/1"
    );
    assert_eq!(
        names(
            needs
                .inbound
                .iter()
                .map(|k| format!("{}:{}@{}", k.po_id, k.sku, k.location))
                .collect()
        ),
        "P1:A@W1 P2:D@W2"
    );
}

#[test]
fn stock_view_totals() {
    let mut book = default_book();
    for text in [
        "receipt A W1 5",
        "receipt A W2 1",
        "receipt A Q 7",
        "order o1 1:A:4",
        "return R1 A Q 2",
        "inbound P2 A W1 3 2026-12-05",
        "inbound P1 A W1 4 2026-12-01 confirmed",
        "inbound P3 A W2 1",
        "inbound P4 A W1 5 2026-11-30",
        "received P4 A W1 5",
    ] {
        ledger::apply(&mut book, &kind(text)).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    }
    let view = |book: &Book| {
        let rows: Vec<(Location, Quantities)> = book
            .locations()
            .map(|l| {
                let q = book.quantities(&StockKey {
                    sku: sku("A"),
                    location: l.id.clone(),
                });
                (l.clone(), q)
            })
            .collect();
        let inbound: Vec<_> = ["P1", "P2", "P3", "P4"]
            .iter()
            .flat_map(|po| ["W1", "W2"].map(|l| (po, l)))
            .filter_map(|(po, l)| {
                book.inbound_line(&InboundKey {
                    po_id: id(PoId::parse, po),
                    sku: sku("A"),
                    location: loc_id(l),
                })
                .cloned()
            })
            .collect();
        stock_view(sku("A"), &rows, &inbound)
    };
    let v = view(&book);
    // W1: 10 on hand (5 + 5 received), 3 reserved; W2: 1 and 1; Q is not sellable.
    assert_eq!(
        (
            v.on_hand,
            v.reserved,
            v.available,
            v.pending_return,
            v.oversold
        ),
        (11, 4, 7, 2, 0)
    );
    let locations: Vec<String> = v
        .locations
        .iter()
        .map(|l| {
            format!(
                "{}:{}/{}/{}",
                l.location, l.on_hand, l.reserved, l.available
            )
        })
        .collect();
    assert_eq!(locations, ["Q:7/0/7", "W2:1/1/0", "W1:10/3/7"]);
    // Received lines (qty 0) are left out; lines are sorted by ETA, then PO,
    // and lines without an ETA come last.
    let inbound: Vec<String> = v
        .inbound
        .iter()
        .map(|l| format!("{}:{}:{}", l.po_id, l.qty, l.confirmed))
        .collect();
    assert_eq!(inbound, ["P1:4:true", "P2:3:false", "P3:1:false"]);

    ledger::apply(&mut book, &kind("order o2 1:A:12")).unwrap();
    let v = view(&book);
    assert_eq!(
        (v.on_hand, v.reserved, v.available, v.oversold),
        (11, 16, 0, 5)
    );
}

#[test]
fn replay_never_applies_an_event_twice() {
    // Another writer replayed the entry first: its key is recorded as applied.
    let mut book = default_book();
    let event = parse_event("receipt A W1 5", "k1".into());
    let payload_hash = payload_hash(&event);
    let record = IdempotencyRecord {
        payload_hash,
        result: EventResult {
            key: event.key.clone(),
            status: EventStatus::Applied,
            seq: Some(7),
            reason: None,
        },
    };
    let keys = HashMap::from([(event.key.clone(), record)]);
    let mut group = Group::new(&mut book, keys, 8, now());
    let entry = Quarantined {
        id: 3,
        event,
        payload_hash,
    };
    let outcome = group.replay(&entry);
    assert_eq!(outcome, ReplayOutcome::Applied { id: 3, seq: 7 });
    let (writes, next_seq) = group.finish();
    assert_eq!(writes.replayed, [outcome]);
    assert!(writes.ledger.is_empty() && writes.idempotency.is_empty());
    assert_eq!(next_seq, 8);
    let key = StockKey {
        sku: sku("A"),
        location: loc_id("W1"),
    };
    assert_eq!(book.quantities(&key), Quantities::default());
}

#[test]
fn a_line_named_twice_is_refused_before_anything_changes() {
    // Events built without `Event::validate`, which refuses them.
    let line = |raw: &str| id(stockd_core::LineId::parse, raw);
    let order_line = |line_id: &str, s: &str, qty| OrderLine {
        line_id: line(line_id),
        sku: sku(s),
        qty,
        location: None,
    };
    let qty_line = |line_id: &str, qty| LineQty {
        line_id: line(line_id),
        qty,
        sku: None,
        location: None,
    };
    let mut book = default_book();
    ledger::apply(&mut book, &kind("receipt A W1 5")).unwrap();
    ledger::apply(&mut book, &kind("order o1 1:A:2 2:A:1")).unwrap();
    let cases = [
        EventKind::Order {
            order: order_ref("o2"),
            lines: vec![order_line("1", "A", 1), order_line("1", "A", 2)],
        },
        // Refused, not quarantined: waiting would not make it right.
        EventKind::Order {
            order: order_ref("o2"),
            lines: vec![
                order_line("1", "X", 1),
                order_line("2", "A", 1),
                order_line("1", "A", 1),
            ],
        },
        // Each line alone is within what is open; both would ship 4 of 2.
        EventKind::Ship {
            order: order_ref("o1"),
            lines: Some(vec![qty_line("1", Some(2)), qty_line("1", Some(2))]),
        },
        EventKind::Cancel {
            order: order_ref("o1"),
            lines: Some(vec![
                qty_line("2", None),
                qty_line("1", None),
                qty_line("1", Some(1)),
            ]),
            reason: None,
        },
        EventKind::Ship {
            order: order_ref("o9"),
            lines: Some(vec![qty_line("1", None), qty_line("1", None)]),
        },
    ];
    let render = |book: &Book| {
        render_book(
            book,
            &book.locations().cloned().collect::<Vec<_>>(),
            &[sku("A"), sku("B")],
            &[order_ref("o1"), order_ref("o2")],
            &[],
        )
    };
    let before = render(&book);
    let duplicate = EventError::DuplicateLine { line_id: line("1") };
    for event in &cases {
        assert_eq!(
            ledger::apply(&mut book, event),
            Err(Refusal::Reject(duplicate.clone())),
            "{event:?}"
        );
        assert_eq!(before, render(&book), "{event:?} left a trace");
    }
    assert_eq!(
        (duplicate.code(), duplicate.field(), duplicate.to_string()),
        (
            "duplicate_line",
            "lines",
            "line 1 appears twice in this event".into()
        )
    );

    // In a request, the whole request is refused.
    let events = [
        parse_event("receipt A W1 1", "k1".into()),
        Event {
            key: id(IdempotencyKey::parse, "k2"),
            occurred_at: None,
            source: None,
            kind: cases[2].clone(),
        },
    ];
    let request: Vec<Submission> = events
        .into_iter()
        .map(|event| Submission {
            payload_hash: payload_hash(&event),
            event,
        })
        .collect();
    let mut group = Group::new(&mut book, HashMap::new(), 3, now());
    assert_eq!(
        group.submit(&request),
        Err(RequestError::Rejected {
            index: 1,
            error: duplicate,
        })
    );
    let (writes, next_seq) = group.finish();
    assert!(writes.idempotency.is_empty() && writes.ledger.is_empty());
    assert_eq!(next_seq, 3);
    assert_eq!(before, render(&book));
}

#[test]
fn a_duplicate_after_a_replay_in_the_same_group_sees_the_new_reason() {
    // Quarantined for its unknown sku; X appears, and the replay finds the
    // location unknown too.
    let mut book = default_book();
    let event = parse_event("order o1 1:X:1@Z", "k1".into());
    let payload_hash = payload_hash(&event);
    let record = |reason: &str| IdempotencyRecord {
        payload_hash,
        result: EventResult {
            key: event.key.clone(),
            status: EventStatus::Quarantined,
            seq: None,
            reason: Some(reason.into()),
        },
    };
    let keys = HashMap::from([(event.key.clone(), record("unknown sku X"))]);
    book.load_variant(sku("X"));
    let mut group = Group::new(&mut book, keys, 1, now());
    let entry = Quarantined {
        id: 1,
        event: event.clone(),
        payload_hash,
    };
    assert_eq!(
        group.replay(&entry),
        ReplayOutcome::StillWaiting {
            id: 1,
            awaiting: Awaiting::Location(loc_id("Z")),
        }
    );
    let resent = group.submit(&[Submission {
        event: event.clone(),
        payload_hash,
    }]);
    assert_eq!(
        resent,
        Ok(vec![EventResult {
            key: event.key.clone(),
            status: EventStatus::Duplicate,
            seq: None,
            reason: Some("unknown location Z".into()),
        }])
    );
    let (writes, next_seq) = group.finish();
    assert_eq!(
        writes.idempotency,
        [(event.key.clone(), Some(record("unknown location Z")))]
    );
    assert!(writes.ledger.is_empty() && writes.quarantined.is_empty());
    assert_eq!(next_seq, 1);
}

#[test]
fn stock_view_lists_inbound_with_an_eta_first() {
    let line = |po: &str, qty, eta: Option<&str>| InboundLine {
        po_id: id(PoId::parse, po),
        sku: sku("A"),
        location: loc_id("W1"),
        qty,
        eta: eta.map(|d| d.parse().unwrap()),
        confirmed: false,
    };
    let lines = [
        line("P5", 1, None),
        line("P2", 1, Some("2026-12-05")),
        line("P1", 1, None),
        line("P4", 1, Some("2026-12-05")),
        line("P6", 0, Some("2026-11-30")),
        line("P3", 1, Some("2026-12-01")),
        line("P0", 0, None),
    ];
    let view = stock_view(sku("A"), &[], &lines);
    let order: Vec<String> = view
        .inbound
        .iter()
        .map(|l| {
            let eta = l.eta.map_or("-".to_string(), |d| d.to_string());
            format!("{}:{eta}", l.po_id)
        })
        .collect();
    assert_eq!(
        order,
        [
            "P3:2026-12-01",
            "P2:2026-12-05",
            "P4:2026-12-05",
            "P1:-",
            "P5:-"
        ]
    );
}
