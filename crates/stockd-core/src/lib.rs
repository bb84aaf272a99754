//! stockd's functional core: the catalog, quantities, events and the rules
//! that apply them. Pure functions over values: no I/O, no async, no clock
//! (time is always an input), so nothing here fails for reasons outside it.

pub mod availability;
pub mod catalog;
pub mod event;
pub mod group;
pub mod ids;
pub mod ledger;
pub mod retry;
pub mod returns;
pub mod rules;
pub mod stock;

pub use catalog::{Location, Variant};
pub use event::{Event, EventInput, EventKind, FieldError};
pub use group::{EventResult, EventStatus, Group, Needs, PayloadHash, RequestError, Submission};
pub use ids::*;
pub use ledger::{Applied, Awaiting, Book, EventError, Note, Refusal, ReservationLine, StockDelta};
pub use stock::{InboundKey, InboundLine, Quantities, StockKey, StockView};
