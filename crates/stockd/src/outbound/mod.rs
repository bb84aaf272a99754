//! The outbound side: what leaves stockd for the channels and other systems.
//! `dispatch` pushes each channel's desired states through its connector
//! (one worker per channel, in-flight marks, per-channel leases, order
//! polls) and `lanes` decides which pushes each round starts, `tracker` follows what channels accept and acknowledge later
//! (bol process statuses, Amazon feeds), `reconcile` compares what the channels show with stockd's belief,
//! `audit` writes the push audit trail and daily figures off the
//! dispatcher's path, and `publish` publishes stock changes on NATS.
//! `stats` holds the percentile and random helpers the figures, the demo
//! and the benchmarks share.

pub mod audit;
pub mod dispatch;
mod lanes;
pub mod publish;
pub mod reconcile;
pub mod stats;
mod tracker;

/// A mutex's guard, also after a panic elsewhere poisoned it (the figures
/// and sets behind these mutexes stay usable).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
