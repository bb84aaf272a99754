//! The canonical payload of an event, whose hash binds an idempotency key to
//! what was sent under it.

use sha2::{Digest, Sha256};
use stockd_core::{Event, PayloadHash, Submission};

/// Hashes the validated event's canonical JSON (fixed field order, parsed
/// values), so formatting or field order in the request does not matter.
pub fn submission(event: Event) -> Submission {
    let canonical = serde_json::to_vec(&event).expect("events always serialize");
    let payload_hash = PayloadHash(Sha256::digest(&canonical).into());
    Submission {
        event,
        payload_hash,
    }
}
